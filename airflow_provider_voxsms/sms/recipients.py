"""Normalise, validate and de-duplicate SMS recipients before anything is sent.

Whole columns go through vectorised pandas string methods (pyarrow-backed); only rows that need
it take a per-row Python path: non-ASCII input (Unicode digits and spaces) and, with a
``default_region``, national-format numbers parsed by ``phonenumbers``.

Phone rules, in order:

* ``None``, NaN, ``pd.NA``, ``""`` and the strings "nan"/"none"/"null"/"<na>" are "empty".
* Numbers (int, float, numpy scalars) become their exact digits; a float must be whole, finite
  and non-negative. A string that is digits plus ".0" (a float rendered as text) loses the ".0".
  Scientific notation ("4.47e11") is invalid: digits may already be lost.
* Unicode decimal digits (full-width, Arabic-Indic, ...) are folded to ASCII (as ``phonenumbers``
  does); Unicode spaces, dashes and format characters are dropped like ASCII separators.
* Separators (spaces, ``- . / ( )``) are dropped; "(0)" right after a country code is a trunk
  marker and is dropped too ("+44 (0)7443 332212"). Any other character makes the row invalid.
* A leading "+" or "00" marks an international number: kept as written.
* A leading single "0" marks a national number. Without ``default_region`` it is invalid
  ("national format: set default_region"); with it, it is parsed by ``phonenumbers`` for that
  region and kept only if ``is_valid_number`` (stricter than ``is_possible``: a wrong digit in a
  national number is caught before it costs a request).
* Other bare digits are international when no ``default_region`` is given. With one, bare digits
  longer than the region's longest national number (10 for GB and US) are international; shorter
  ones are tried as a national number of the region first and then as international, and kept
  only if ``phonenumbers`` finds one of the two valid ("7443332212" with GB -> 447443332212;
  "447443332212" with GB -> 447443332212).
* International results must be 8-15 digits (E.164) and start with an assigned country code.

Texts: empty or whitespace-only, longer than ``MAX_TEXT_LENGTH`` characters, containing lone
surrogates (not encodable) or control characters other than tab, newline, carriage return and
form feed (form feed is a GSM 03.38 character) are refused: a single ``text`` raises
``RecipientsError``; rows of a ``text_column`` become invalid rows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from numbers import Integral, Real

import numpy as np
import pandas as pd
import phonenumbers

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.segments import MAX_TEXT_LENGTH

__all__ = ["PreparedRecipients", "RecipientsError", "normalise_phones", "prepare_recipients"]

STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype
MIN_DIGITS, MAX_DIGITS = 8, 15
ACCEPTED = (
    "a pandas DataFrame, a pandas Series, a list or tuple of phone numbers (str, int, float or "
    "None), or a list of dicts (one dict per row)"
)
EMPTY_WORDS = frozenset({"nan", "none", "null", "<na>", "nat"})

# Patterns are ASCII-only and avoid \s, \d and $ so pandas runs them in pyarrow (RE2).
_SEPARATORS = r"[ \t\n\r\x0b\x0c\-./()]"
_TRUNK_ZERO = r"^([ (]*(?:\+|00)[ (]*[0-9]{1,3}[ )\-./]*)\(0\)"
_FLOAT_TEXT = r"\+?[0-9]+\.0"
_COUNTRY_CODE = "(?:{})".format(
    "|".join(str(c) for c in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
)
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # all but \t \n \f \r

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
class PreparedRecipients:
    """Recipients split into rows to send, rows refused (with a reason) and dropped duplicates.

    ``valid`` has columns ``phone`` (str: digits-only E.164 without "+") and ``text``
    (categorical of str: one copy per distinct text keeps a million rows small); its index is the
    row position in the input, in input order. ``invalid`` has columns ``row``, ``original`` (the
    input value as ``str()`` shows it) and ``reason``. ``total == len(valid) + len(invalid) +
    duplicates``.
    """

    valid: pd.DataFrame
    invalid: pd.DataFrame
    duplicates: int
    total: int


def prepare_recipients(
    recipients,
    *,
    phone_column: str = "phone",
    text: str | None = None,
    text_column: str | None = None,
    default_region: str | None = None,
) -> PreparedRecipients:
    """Normalise phone numbers, check texts and drop repeated (phone, text) pairs.

    :param recipients: a DataFrame, a Series or list/tuple of numbers, or a list of dicts.
    :param phone_column: column (or dict key) holding the numbers.
    :param text: one message for every recipient; give this or ``text_column``.
    :param text_column: column (or dict key) holding a per-row message.
    :param default_region: ISO 3166 region (e.g. "GB") for numbers written in national format.
    :raises RecipientsError: for input that cannot be used at all (wrong type, missing column,
        bad single text, unknown region). Bad rows are reported in ``invalid`` instead.
    """
    if (text is None) == (text_column is None):
        raise RecipientsError(
            "give exactly one of text= (one message for every recipient) or text_column= "
            f"(a per-row message column); got {'both' if text is not None else 'neither'}"
        )
    region = _check_region(default_region)
    if text is not None:
        problem = _text_problem(text)
        if problem:
            raise RecipientsError(f"text is unusable: {problem}")
    phones, texts = _columns(recipients, phone_column, text_column)

    phone, reasons = normalise_phones(phones, region)
    if texts is None:
        codes, categories = np.zeros(len(phones), dtype=np.intp), [text]
    else:
        codes, categories, text_reasons = _check_texts(texts)
        reasons = np.where(pd.isna(reasons), text_reasons, reasons)

    ok = pd.isna(reasons)
    rows = np.flatnonzero(ok)
    kept_phone = phone.iloc[rows].reset_index(drop=True)
    if len(categories) == 1:
        dup = kept_phone.duplicated().to_numpy()
    else:
        dup = pd.DataFrame({"p": kept_phone, "t": codes[rows]}).duplicated().to_numpy()
    keep = rows[~dup]
    valid = pd.DataFrame(
        {"phone": kept_phone[~dup].array, "text": _categorical(codes[keep], categories)},
        index=pd.Index(keep, name="row"),
    )
    bad = np.flatnonzero(~ok)
    invalid = pd.DataFrame(
        {
            "row": bad.astype(np.int64),
            "original": pd.array(_originals(phones, bad), dtype=STR),
            "reason": pd.array(reasons[bad].tolist(), dtype=STR),
        }
    )
    return PreparedRecipients(valid, invalid, int(dup.sum()), len(phones))


def normalise_phones(values: pd.Series, region: str | None = None) -> tuple[pd.Series, np.ndarray]:
    """Normalise numbers to digits-only E.164 (see the module rules).

    Returns the numbers (str Series, positional index, NaN where invalid) and an object array of
    reasons (None where valid).
    """
    values = values.reset_index(drop=True)
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

    bare = pending & isdigit & ~intl
    national = bare & digits.str.startswith("0").to_numpy(bool)
    bare &= ~national
    if region is None:
        reasons[national] = "national format: set default_region"
        international = pending & isdigit & ~national
    else:
        longest = max(
            phonenumbers.PhoneMetadata.metadata_for_region(region).general_desc.possible_length
        )
        ambiguous = bare & (length <= longest)
        international = pending & isdigit & ~national & ~ambiguous
        digits = _parse_with_region(digits, national | ambiguous, region, reasons)

    short = international & (length < MIN_DIGITS)
    long = international & (length > MAX_DIGITS)
    for mask, reason in (
        (short, f"too short: {{}} digits (E.164 needs {MIN_DIGITS}-{MAX_DIGITS})"),
        (long, f"too long: {{}} digits (E.164 allows at most {MAX_DIGITS})"),
    ):
        reasons[mask] = [reason.format(n) for n in length[mask].tolist()]
    checkable = international & ~short & ~long
    known = digits.str.match(_COUNTRY_CODE).to_numpy(bool)
    reasons[checkable & ~known] = "unknown country code"
    return digits.where(pd.isna(reasons)), reasons


def _check_region(region: str | None) -> str | None:
    """Upper-case a region code and make sure ``phonenumbers`` knows it."""
    if region is None:
        return None
    code = str(region).strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise RecipientsError(
            f"default_region {region!r} is not a known region; use an ISO 3166-1 alpha-2 code "
            "such as 'GB' or 'US'"
        )
    return code


def _columns(recipients, phone_column, text_column) -> tuple[pd.Series, pd.Series | None]:
    """Pick the phone and text columns out of any accepted input, as positional Series."""
    if isinstance(recipients, pd.DataFrame):
        return _frame_columns(recipients, phone_column, text_column)
    if isinstance(recipients, pd.Series):
        _no_text_column(text_column, "a Series")
        return recipients.reset_index(drop=True), None
    if isinstance(recipients, list | tuple):
        is_row = [isinstance(r, Mapping) for r in recipients]
        if any(is_row):
            if not all(is_row):
                first = is_row.index(False)
                raise RecipientsError(
                    "recipients mixes dicts and plain values (row "
                    f"{first} is {type(recipients[first]).__name__}); use one kind"
                )
            return _dict_columns(recipients, phone_column, text_column)
        if recipients:
            _no_text_column(text_column, "a list of phone numbers")
        texts = None if text_column is None else pd.Series([], dtype=object)  # [] only here
        return pd.Series(list(recipients), dtype=object), texts
    hint = "; wrap a single number in a list" if isinstance(recipients, str | int | float) else ""
    raise RecipientsError(f"recipients must be {ACCEPTED}; got {type(recipients).__name__}{hint}")


def _frame_columns(frame: pd.DataFrame, phone_column, text_column):
    """Columns of a DataFrame, refusing duplicate or missing column names."""
    if frame.empty and len(frame.columns) == 0:
        return pd.Series([], dtype=object), (None if text_column is None else pd.Series([]))
    if not frame.columns.is_unique:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise RecipientsError(f"recipients has duplicate column names: {repeated}; rename them")
    columns = list(frame.columns)
    for role, name in (("phone_column", phone_column), ("text_column", text_column)):
        if name is not None and name not in frame.columns:
            raise RecipientsError(_missing(role, name, columns))
    phones = frame[phone_column].reset_index(drop=True)
    texts = None if text_column is None else frame[text_column].reset_index(drop=True)
    return phones, texts


def _dict_columns(rows: list, phone_column, text_column):
    """Columns of a list of dicts; a key missing from a single row is an empty value there."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for role, name in (("phone_column", phone_column), ("text_column", text_column)):
        if name is not None and name not in keys:
            raise RecipientsError(_missing(role, name, keys))
    phones = pd.Series([row.get(phone_column) for row in rows], dtype=object)
    texts = None
    if text_column is not None:
        texts = pd.Series([row.get(text_column) for row in rows], dtype=object)
    return phones, texts


def _missing(role: str, name, columns: list) -> str:
    """Message for a column that is not there, with the columns that are."""
    close = [c for c in columns if str(c).strip().lower() == str(name).strip().lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{role} {name!r} is not in recipients; columns are {columns}{hint}"


def _no_text_column(text_column, what: str) -> None:
    if text_column is not None:
        raise RecipientsError(
            f"text_column={text_column!r} needs a DataFrame or a list of dicts, but recipients "
            f"is {what}; pass text= instead"
        )


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

    objects = values.to_numpy(object)
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
            (finite & (values >= 10.0**MAX_DIGITS), f"too long: more than {MAX_DIGITS} digits"),
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
        broken = np.array([isinstance(v, str) and not _encodable(v) for v in values], dtype=bool)
        reasons[broken] = "cannot be encoded (lone surrogate)"
        values = values.copy()
        values[broken] = None
        return pd.Series(values, dtype=STR)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if before.strip().lower() in EMPTY_WORDS:
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


def _parse_with_region(
    digits: pd.Series,
    rows: np.ndarray,
    region: str,
    reasons: np.ndarray,
) -> pd.Series:
    """Resolve national or ambiguous bare-digit rows with ``phonenumbers``, once per value."""
    if not rows.any():
        return digits
    subset = digits[rows]
    resolved = {v: _resolve(v, region) for v in pd.unique(subset)}
    reasons[rows] = [resolved[v][1] for v in subset]
    digits = digits.copy()
    digits.loc[rows] = pd.array([resolved[v][0] for v in subset], dtype=STR)
    return digits


def _resolve(value: str, region: str) -> tuple[str | None, str | None]:
    """A national number of ``region`` if valid, else (no leading 0) an international one."""
    candidates = [(value, region)]
    if not value.startswith("0"):
        candidates.append(("+" + value, None))
    for text, where in candidates:
        try:
            number = phonenumbers.parse(text, where)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return e164[1:], None
    return None, f"not a valid number for region {region}"


def _check_texts(texts: pd.Series) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Codes into the distinct valid texts, those texts, and a reason per row (None if fine)."""
    try:
        codes, uniques = pd.factorize(texts)
    except TypeError:  # unhashable cells (a list, a dict): refuse those rows, not the whole input
        objects = texts.to_numpy(object)
        unhashable = np.array([not _hashable(v) for v in objects], dtype=bool)
        codes, categories, reasons = _check_texts(texts.where(~unhashable))
        reasons[unhashable] = [
            f"text is not a string: {type(v).__name__}" for v in objects[unhashable]
        ]
        return codes, categories, reasons
    uniques = list(np.asarray(uniques, dtype=object))
    problems = [_text_problem(u) for u in uniques] + ["empty text"]  # code -1 is a missing text
    reasons = np.array(problems, dtype=object)[codes]
    good = np.array([p is None for p in problems[:-1]], dtype=bool)
    remap = np.full(len(uniques) + 1, -1, dtype=np.intp)
    remap[np.flatnonzero(good)] = np.arange(good.sum())
    return remap[codes], [u for u, g in zip(uniques, good, strict=True) if g], reasons


def _text_problem(text) -> str | None:
    """Why a message text cannot be sent, or None."""
    if not isinstance(text, str):
        return "empty text" if _is_missing(text) else f"text is not a string: {type(text).__name__}"
    if not text.strip():
        return "empty text" if not text else "empty text (whitespace only)"
    if len(text) > MAX_TEXT_LENGTH:
        return f"text too long: {len(text)} characters (limit {MAX_TEXT_LENGTH})"
    if not _encodable(text):
        return "text cannot be encoded (lone surrogate)"
    if m := _CONTROL.search(text):
        return f"text contains control character U+{ord(m.group()):04X}"
    return None


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_missing(value) -> bool:
    try:
        return pd.isna(value) is True
    except (TypeError, ValueError):
        return False


def _categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    """Texts as a categorical: one stored copy per distinct text."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=STR))


def _originals(values: pd.Series, rows: np.ndarray) -> list[str]:
    """The refused input values as ``str()`` shows them (lone surrogates escaped); a missing
    value (None, NaN, NA) as an empty string, as it stood in the source file."""
    return [
        "" if _is_missing(v) else str(v).encode("utf-8", "backslashreplace").decode("utf-8")
        for v in values.iloc[rows].to_numpy(object)
    ]
