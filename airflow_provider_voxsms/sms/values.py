"""What a cell of input holds, said once for phone numbers and texts: missing or not, and
whether UTF-8 can carry its text.

A cell is missing when it holds no value (None, NaN, NA, NaT) or one of ``NULL_MARKERS``, the
words exports write for "no value" (a CSV read as text keeps them as strings): ``""``,
``NULL``, ``None``, ``NA``, ``N/A``, ``NaN``, ``\\N`` (PostgreSQL's COPY) and ``<NA>`` (pandas'
``str(pd.NA)``), trimmed, in any case. The same rule holds for the phone, text and placeholder
columns, whatever the source. ``NaT`` is not a marker: "Nat" is a first name.

``STR`` is the dtype text columns are kept in (pyarrow-backed, NaN when missing: pandas 3's
default "str"), so the vectorised string methods run in pyarrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["NULL_MARKERS", "STR", "encodable", "is_missing", "is_null_marker", "null_markers"]

STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype
# Written "no value", compared trimmed and lower-cased (see the module's docstring).
NULL_MARKERS = frozenset({"", "null", "none", "na", "n/a", "nan", "\\n", "<na>"})


def is_missing(value) -> bool:
    """Whether ``value`` is one missing value (None, NaN, NA, NaT); False for what pandas cannot
    judge as one (a list, a dict)."""
    try:
        return pd.isna(value) is True
    except (TypeError, ValueError):
        return False


def is_null_marker(value) -> bool:
    """Whether ``value`` is a string that writes "no value" (one of ``NULL_MARKERS``)."""
    return isinstance(value, str) and value.strip().lower() in NULL_MARKERS


def null_markers(texts: pd.Series) -> np.ndarray:
    """Which cells of a column of strings (NaN where missing) are ``NULL_MARKERS``, at once."""
    if not len(texts):
        return np.zeros(0, dtype=bool)
    return texts.str.strip().str.lower().isin(NULL_MARKERS).to_numpy(bool)


def encodable(value: str) -> bool:
    """Whether UTF-8 can carry ``value``: a lone surrogate (from a broken decode) cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
