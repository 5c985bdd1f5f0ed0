"""What a cell of input holds, said once for phone numbers and texts: missing or not, and
whether UTF-8 can carry its text.

``STR`` is the dtype text columns are kept in (pyarrow-backed, NaN when missing: pandas 3's
default "str"), so the vectorised string methods run in pyarrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["STR", "encodable", "is_missing"]

STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype


def is_missing(value) -> bool:
    """Whether ``value`` is one missing value (None, NaN, NA, NaT); False for what pandas cannot
    judge as one (a list, a dict)."""
    try:
        return pd.isna(value) is True
    except (TypeError, ValueError):
        return False


def encodable(value: str) -> bool:
    """Whether UTF-8 can carry ``value``: a lone surrogate (from a broken decode) cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
