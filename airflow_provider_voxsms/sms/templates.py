"""Per-row texts from a template: ``"Hi {first_name}, your code is {code}."``.

Placeholders are single braces around a plain column name; ``{{`` and ``}}`` are literal
braces (after Jinja, which renders ``{{ }}`` first, write them as ``{{ '{{' }}``). Attribute
access, indexing, conversions and format specs are refused, so a template can only read a
cell's text. Rendering is vectorised: one string concatenation per part over the whole column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Formatter

import numpy as np
import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.values import null_markers

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Template:
    """A text cut into literal ``parts`` around its ``fields``: ``len(parts) == len(fields) + 1``."""

    parts: tuple[str, ...]
    fields: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """The columns the template reads, once each, in order of first use."""
        return list(dict.fromkeys(self.fields))


def parse_template(text: str) -> Template | None:
    """The template in ``text``, or None when it has no placeholders (one text for all).

    :raises RecipientsError: for an unmatched brace or a placeholder that is not ``{column}``.
    """
    try:
        pieces = list(Formatter().parse(text))
    except ValueError as err:
        raise RecipientsError(
            f"text has a brace that opens or closes no placeholder ({err}); placeholders are "
            "{column}, and a literal brace is written twice: {{ or }}"
        ) from None
    parts, fields = [""], []
    for literal, field, spec, conversion in pieces:
        parts[-1] += literal
        if field is None:
            continue
        if not _PLAIN_NAME.fullmatch(field) or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise RecipientsError(
                f"text placeholder {shown} is not a plain column name: only {{column}} is "
                "allowed (letters, digits and underscores; no attributes, indexes or formats). "
                "Compute the value in a column upstream."
            )
        fields.append(field)
        parts.append("")
    if not fields:
        return None
    return Template(tuple(parts), tuple(fields))


def render(template: Template, columns: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Each row's text, and a reason per row (None where fine) for a missing or empty value.

    ``columns`` holds the template's columns, one row per recipient. Whole floats render
    without ``.0`` (a CSV column of codes with a gap reads as float), anything else as
    ``str()`` gives it.
    """
    reasons = np.full(len(columns), None, dtype=object)
    cells = {}
    for name in template.columns:
        values, empty = _cell_texts(columns[name])
        reasons[empty & pd.isna(reasons)] = f"placeholder {{{name}}} is empty"
        cells[name] = values
    texts = pd.Series(template.parts[0], index=columns.index, dtype=_STR)
    for field, literal in zip(template.fields, template.parts[1:], strict=True):
        texts = texts + cells[field] + literal
    return texts.reset_index(drop=True).astype(object).where(pd.isna(reasons)), reasons


_STR = pd.StringDtype("pyarrow")


def _cell_texts(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A column as strings (missing cells as ""), and which cells are missing, blank or a null
    marker ("NULL", "\\N", ...: see :mod:`.values`)."""
    as_text = values.astype(object)
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.notna() & (values % 1 == 0) & (values.abs() < 2**53)
        as_text = as_text.mask(whole, values[whole].astype("int64").astype(object))
    elif values.dtype == object:  # cells of any type (a list of dicts): the same rule per cell
        cells = [_whole_float_as_int(v) for v in as_text.to_numpy()]  # map() would re-infer
        as_text = pd.Series(cells, index=values.index, dtype=object)
    missing = pd.isna(as_text).to_numpy(bool) if len(as_text) else np.zeros(0, bool)
    text = pd.Series(as_text.where(~missing, "").map(str, na_action=None), dtype=_STR)
    blank = missing | null_markers(text)  # "" is a marker: blank cells too
    return text.reset_index(drop=True).set_axis(values.index), blank


def _whole_float_as_int(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
