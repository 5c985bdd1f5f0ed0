"""Written phone values to digits: what a cell says, before any numbering plan is asked.

Whole columns go through vectorised pandas string methods (pyarrow-backed); only non-ASCII
values (Unicode digits and spaces) take a per-row Python path. The rules, in order:

* ``None``, NaN, ``pd.NA`` and the null markers of :mod:`..values` ("NULL", "N/A", "\\N", ...)
  are "empty".
* Numbers (int, float, numpy scalars) become their exact digits; a float must be whole, finite,
  non-negative and below 2**53 (beyond that its digits may be lost). A string that is digits
  plus ".0" (a float rendered as text) loses the ".0". Scientific notation ("4.47e11") is
  invalid: digits may already be lost.
* Unicode decimal digits (full-width, Arabic-Indic, ...) are folded to ASCII (as ``phonenumbers``
  does); Unicode spaces, dashes and format characters are dropped like ASCII separators.
* Separators (spaces, ``- . / ( )``) are dropped; "(0)" right after a country code is a trunk
  marker and is dropped too ("+44 (0)7443 332212"). Any other character makes the row invalid.
* A leading "+" or "00" marks an international number.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from itertools import repeat
from numbers import Integral, Real

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.numbers.verdict import MAX_DIGITS
from airflow_provider_voxsms.sms.values import STR, encodable, is_null_marker

__all__ = ["Digits", "digits_of"]

# Patterns are ASCII-only and avoid \s, \d and $ so pandas runs them in pyarrow (RE2).
_SEPARATORS = r"[ \t\n\r\x0b\x0c\-./()]"
_TRUNK_ZERO = r"^([ (]*(?:\+|00)[ (]*[0-9]{1,3}[ )\-./]*)\(0\)"
_FLOAT_TEXT = r"\+?[0-9]+\.0"
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")

_STR, _FLOAT, _INT, _MISSING, _OTHER = range(5)
_KIND_BY_TYPE = {
    str: _STR,
    float: _FLOAT,
    np.float64: _FLOAT,
    np.float32: _FLOAT,
    int: _INT,
    np.int64: _INT,
    np.int32: _INT,
    np.uint64: _INT,
    type(None): _MISSING,
    type(pd.NA): _MISSING,
    type(pd.NaT): _MISSING,
}


@dataclass
class Digits:
    """A column of written phone values as digits, with what was seen on the way."""

    digits: pd.Series  # after any "+" or "00" (str, positional index; NaN when missing)
    reasons: np.ndarray  # why a row is refused already (object: None when it is not)
    international: np.ndarray  # written with a leading "+" or "00"
    length: np.ndarray  # len(digits), 0 when missing
    usable: np.ndarray  # not refused and all ASCII digits: for the numbering plan to judge


def digits_of(values: pd.Series) -> Digits:
    """The digits of each written value (positional index), refusing what is no number."""
    reasons = np.full(len(values), None, dtype=object)
    s = _as_strings(values, reasons)
    present = s.notna().to_numpy(bool)  # boolean .str methods answer False for NaN
    nonascii = s.str.contains(r"[^\x00-\x7f]", na=False).to_numpy(bool)  # pandas 2: no .isascii
    if nonascii.any():
        s = s.copy()
        s.loc[nonascii] = [_fold(v) for v in s[nonascii]]
    folded = s
    messy = present & ~s.str.isdigit().to_numpy(bool)
    if messy.any():
        s = s.copy()
        s.loc[messy] = _drop_separators(s[messy]).array

    plus = s.str.startswith("+").to_numpy(bool)
    digits = s.str.removeprefix("+")
    zeros = ~plus & digits.str.startswith("00").to_numpy(bool)
    if zeros.any():
        digits.loc[zeros] = digits[zeros].str.slice(2).array
    intl = plus | zeros
    length = digits.str.len().fillna(0).to_numpy(np.int64)
    isdigit = digits.str.fullmatch("[0-9]+").to_numpy(bool)  # ASCII only: "²" is not a digit
    pending = pd.isna(reasons)

    empty = pending & (length == 0) & ~intl
    reasons[empty] = "empty"
    junk = pending & ~empty & ~isdigit
    if junk.any():
        reasons[junk] = list(map(_junk_reason, folded[junk], s[junk]))
    return Digits(digits, reasons, intl, length, pending & isdigit)


def _as_strings(values: pd.Series, reasons: np.ndarray) -> pd.Series:
    """Every value as a str (NaN when missing or already refused, with ``reasons`` set)."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        reasons[:] = "not a phone number: bool"
        return pd.Series(np.nan, index=values.index, dtype=STR)
    if pd.api.types.is_integer_dtype(dtype):
        negative = (values < 0).fillna(False).to_numpy(bool)
        reasons[negative] = "negative number"
        return values.astype(STR).where(~negative)
    if pd.api.types.is_float_dtype(dtype):
        return _whole_numbers(values.to_numpy(np.float64, na_value=np.nan), reasons)
    if dtype == STR:
        return values
    if isinstance(dtype, pd.StringDtype):
        return _to_str(values.to_numpy(object), reasons)
    return _objects_as_strings(values.to_numpy(object), reasons)


def _objects_as_strings(objects: np.ndarray, reasons: np.ndarray) -> pd.Series:
    """An object column as str, each kind of value (str, float, int, other) converted at once."""
    kinds = np.fromiter(
        map(_KIND_BY_TYPE.get, map(type, objects), repeat(_OTHER)), np.int8, len(objects)
    )
    other = np.flatnonzero(kinds == _OTHER)
    if len(other):
        kinds[other] = [_kind(v) for v in objects[other]]
    if (kinds == _STR).all():
        return _to_str(objects, reasons)
    out = np.full(len(objects), None, dtype=object)
    texts = kinds == _STR
    out[texts] = objects[texts]
    floats = np.flatnonzero(kinds == _FLOAT)
    if len(floats):
        sub = np.full(len(floats), None, dtype=object)
        out[floats] = _whole_numbers(objects[floats].astype(np.float64), sub).to_numpy(object)
        reasons[floats] = sub
    ints = np.flatnonzero(kinds == _INT)
    if len(ints):
        as_text = [str(int(v)) for v in objects[ints]]
        negative = np.array([t.startswith("-") for t in as_text], dtype=bool)
        reasons[ints[negative]] = "negative number"
        out[ints[~negative]] = np.array(as_text, dtype=object)[~negative]
    others = kinds == _OTHER
    if others.any():
        reasons[others] = [f"not a phone number: {type(v).__name__}" for v in objects[others]]
    return _to_str(out, reasons)


def _kind(value) -> int:
    """Kind of a value whose exact type is not in ``_KIND_BY_TYPE``."""
    if isinstance(value, str):
        return _STR
    if isinstance(value, bool | np.bool_):
        return _OTHER
    if isinstance(value, Integral | np.integer):
        return _INT
    if isinstance(value, Real | np.floating):
        return _FLOAT
    try:
        return _MISSING if pd.isna(value) is True else _OTHER
    except (TypeError, ValueError):
        return _OTHER


def _whole_numbers(values: np.ndarray, reasons: np.ndarray) -> pd.Series:
    """Floats as digit strings; NaN is missing, fractions and negatives are refused."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        checks = (
            (~np.isnan(values) & ~finite, "not a finite number"),
            (finite & (values < 0), "negative number"),
            (finite & (values != np.floor(values)), "not a whole number"),
            # Whole floats are exact below 2**53 (16 digits): "+43 0..." may still be 15 of them.
            (finite & (values >= 2.0**53), f"too long: more than {MAX_DIGITS} digits"),
        )
    usable = finite.copy()
    for mask, reason in checks:
        reasons[mask & pd.isna(reasons)] = reason
        usable &= ~mask
    whole = np.where(usable, values, 0).astype(np.int64)
    return pd.Series(whole).astype(STR).where(usable)


def _to_str(values: np.ndarray, reasons: np.ndarray) -> pd.Series:
    """Object array of str/None as a str Series; strings that UTF-8 cannot hold are refused."""
    try:
        return pd.Series(values, dtype=STR)
    except UnicodeEncodeError:
        broken = np.array([isinstance(v, str) and not encodable(v) for v in values], dtype=bool)
        reasons[broken] = "cannot be encoded (lone surrogate)"
        values = values.copy()
        values[broken] = None
        return pd.Series(values, dtype=STR)


def _fold(value: str) -> str:
    """Fold Unicode decimal digits to ASCII and drop Unicode spaces, dashes and format characters.

    Other numerals ("²", "①", Ethiopic or Kharosthi digits) are not digits to ``phonenumbers``
    either: they are kept as they are (NFKC would turn "²" into "2"), so the row is refused.
    """
    out = []
    for raw in value:
        if (digit := unicodedata.decimal(raw, None)) is not None:
            out.append(str(digit))
        elif unicodedata.numeric(raw, None) is not None:
            out.append(raw)
        else:
            for ch in unicodedata.normalize("NFKC", raw):
                if ch.isascii() or not (
                    ch.isspace() or unicodedata.category(ch) in ("Zs", "Pd", "Cf")
                ):
                    out.append(ch)
    return "".join(out)


def _drop_separators(s: pd.Series) -> pd.Series:
    """Strip separators, the ".0" of a float rendered as text, and a "(0)" trunk marker."""
    float_text = s.str.fullmatch(_FLOAT_TEXT).to_numpy(bool)
    if float_text.any():
        s = s.copy()
        s.loc[float_text] = s[float_text].str.slice(0, -2).array
    trunk = s.str.contains("(0)", regex=False).to_numpy(bool)
    if trunk.any():
        s = s.copy()
        s.loc[trunk] = s[trunk].str.replace(_TRUNK_ZERO, r"\1", regex=True).array
    return s.str.replace(_SEPARATORS, "", regex=True)


def _junk_reason(before: str, value: str) -> str:
    """Short reason for a value (before and after dropping separators) that is not a number."""
    if is_null_marker(before):
        return "empty"
    if _SCIENTIFIC.fullmatch(before.strip()):
        return "scientific notation: digits may be lost; store phone numbers as text"
    if any(ch.isalpha() for ch in value):
        return "contains letters"
    if "+" in value.lstrip("+") or value.startswith("++"):
        return "misplaced '+'"
    odd = next((ch for ch in value if ch not in "0123456789+"), None)
    if odd is None:
        return "no digits after the international prefix"
    return f"unexpected character {odd!r}"
