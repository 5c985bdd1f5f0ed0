"""Normalise, validate and de-duplicate SMS recipients before anything is sent.

Whole columns go through vectorised pandas string methods (pyarrow-backed), and the numbering
plan (``phonenumbers``' metadata) is applied to them per country code; only rows that need it
take a per-row Python path: non-ASCII input (Unicode digits and spaces), national-format
numbers (parsed by ``phonenumbers`` for the ``default_region``) and international numbers that
repeat the national prefix after the country code ("+44 0 7443 332212": ``phonenumbers``
strips or transforms it).

Phone rules, in order:

* ``None``, NaN, ``pd.NA``, ``""`` and the strings "nan"/"none"/"null"/"<na>" are "empty".
* Numbers (int, float, numpy scalars) become their exact digits; a float must be whole, finite,
  non-negative and below 2**53 (beyond that its digits may be lost). A string that is digits
  plus ".0" (a float rendered as text) loses the ".0". Scientific notation ("4.47e11") is
  invalid: digits may already be lost.
* Unicode decimal digits (full-width, Arabic-Indic, ...) are folded to ASCII (as ``phonenumbers``
  does); Unicode spaces, dashes and format characters are dropped like ASCII separators.
* Separators (spaces, ``- . / ( )``) are dropped; "(0)" right after a country code is a trunk
  marker and is dropped too ("+44 (0)7443 332212"). Any other character makes the row invalid.
* A leading "+" or "00" marks an international number.
* A leading single "0" marks a national number. Without ``default_region`` it is invalid
  ("national format: set default_region"); with it, ``phonenumbers`` parses it for that region.
* Other bare digits (and ints, floats) are international when no ``default_region`` is given.
  With one, bare digits longer than the longest national number of the region's country code
  (10 for GB and US) are international; shorter ones, and those starting with a national prefix
  other than 0 ("8 912 345-67-89" with RU), may be either: the reading that is a valid number
  wins, national first, then (with ``number_check="possible"``) the first possible reading
  ("7443332212" with GB -> 447443332212; "3612345678" with GB -> 3612345678, Hungary).

One verdict per number: whichever way it was written, the number (country code + national
significant number, as ``phonenumbers.parse`` reads it) is then checked the same way, in order:

* its country code must be assigned ("unknown country code");
* its length must be possible for the country, dialled with the country code:
  ``phonenumbers.is_possible_number_with_reason`` is ``IS_POSSIBLE``, so too short, too long,
  impossible and local-only lengths are refused ("too short for +44 (GB): 8 digits after +44 is
  a local number without its area code");
* it must fit the general national-number pattern of one of the code's regions
  (``general_desc``: the coarse shape, a UK number never starts with 4 or 0): "impossible for
  +44 (GB): no 10-digit number there begins with 415";
* it must be 8-15 digits in all, what E.164 and the API allow ("too short: 6 digits ...");
* with ``number_check="valid"`` only: ``phonenumbers.is_valid_number``, a number range in use
  ("not a valid number for +44 (GB): ...").

The result is digits-only E.164 without "+": what ``phonenumbers`` formats as E.164 (a national
prefix after the country code is dropped where the plan says so; Italy keeps its leading 0).

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
from functools import cache
from itertools import repeat
from numbers import Integral, Real

import numpy as np
import pandas as pd
import phonenumbers

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.segments import MAX_TEXT_LENGTH
from airflow_provider_voxsms.sms.templates import parse_template, render

__all__ = ["PreparedRecipients", "RecipientsError", "normalise_phones", "prepare_recipients"]

STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype
MIN_DIGITS, MAX_DIGITS = 8, 15  # what the API routes (E.164 without "+")
NUMBER_CHECKS = ("possible", "valid")
ACCEPTED = (
    "a pandas DataFrame, a pandas Series, a list or tuple of phone numbers (str, int, float or "
    "None), or a list of dicts (one dict per row)"
)
EMPTY_WORDS = frozenset({"nan", "none", "null", "<na>", "nat"})

# Patterns are ASCII-only and avoid \s, \d and $ so pandas runs them in pyarrow (RE2).
_SEPARATORS = r"[ \t\n\r\x0b\x0c\-./()]"
_TRUNK_ZERO = r"^([ (]*(?:\+|00)[ (]*[0-9]{1,3}[ )\-./]*)\(0\)"
_FLOAT_TEXT = r"\+?[0-9]+\.0"
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
    input value as ``str()`` shows it), ``phone`` (the normalised number, missing when the value
    is not a usable number) and ``reason``. ``phones`` is the input's phone column as given
    (not a copy). ``total == len(valid) + len(invalid) + duplicates``.
    """

    valid: pd.DataFrame
    invalid: pd.DataFrame
    duplicates: int
    total: int
    phones: pd.Series | None = None
    copies: pd.DataFrame | None = None  # the dropped duplicates: ``row``, ``phone``

    def drop_copies(self, seen: np.ndarray) -> PreparedRecipients:
        """This input without the valid rows ``seen`` marks (copies of rows an earlier chunk
        of the same stream holds): they become duplicates."""
        if not seen.any():
            return self
        moved = self.valid[seen]
        copies = pd.DataFrame(
            {"row": moved.index.to_numpy(np.int64), "phone": moved["phone"].array}
        )
        return PreparedRecipients(
            self.valid[~seen],
            self.invalid,
            self.duplicates + int(seen.sum()),
            self.total,
            self.phones,
            pd.concat([self.copies, copies], ignore_index=True)
            if self.copies is not None
            else copies,
        )

    def copies_as_written(self) -> list[str]:
        """How each dropped duplicate was written in the input."""
        if self.copies is None:
            return []
        if self.phones is None:
            return self.copies["phone"].astype(object).tolist()
        rows = self.copies["row"].to_numpy(np.int64)
        return _originals(self.phones.reset_index(drop=True), rows)

    def as_written(self, numbers: list[str]) -> list[str]:
        """How each of these valid numbers was written in the input (at its first row)."""
        if self.phones is None or not numbers:
            return list(numbers)
        phone = self.valid["phone"]
        hits = phone[phone.isin(numbers)]
        first_row = pd.Series(hits.index.to_numpy(), index=hits.to_numpy(dtype=object))
        first_row = first_row[~first_row.index.duplicated(keep="first")]
        rows = first_row.reindex(numbers)
        known = rows.notna().to_numpy()
        written = np.asarray(numbers, dtype=object)
        phones = self.phones.reset_index(drop=True)
        written[known] = _originals(phones, rows[known].to_numpy().astype(np.int64))
        return written.tolist()


def prepare_recipients(
    recipients,
    *,
    phone_column: str = "phone",
    text: str | None = None,
    text_column: str | None = None,
    default_region: str | None = None,
    number_check: str = "possible",
) -> PreparedRecipients:
    """Normalise phone numbers, check texts and drop repeated (phone, text) pairs.

    :param recipients: a DataFrame, a Series or list/tuple of numbers, or a list of dicts.
    :param phone_column: column (or dict key) holding the numbers.
    :param text: one message for every recipient; give this or ``text_column``.
    :param text_column: column (or dict key) holding a per-row message.
    :param default_region: ISO 3166 region (e.g. "GB") for numbers written in national format.
    :param number_check: how strictly numbers are checked against the numbering plan.
        ``"possible"`` (default): a length the country's numbers can have, dialled with the
        country code (not a local-only length), and digits of the country's general shape.
        This catches the usual typos (a digit missing or extra, a wrong leading digit) and keeps
        working while operators open new number ranges. ``"valid"``: also in a number range in
        use per ``phonenumbers``' metadata (``is_valid_number``); that metadata lags behind new
        allocations, so a newly issued number can be refused until ``phonenumbers`` is upgraded.
    :raises RecipientsError: for input that cannot be used at all (wrong type, missing column,
        bad single text, unknown region, unknown ``number_check``). Bad rows are reported in
        ``invalid`` instead.
    """
    if (text is None) == (text_column is None):
        raise RecipientsError(
            "give exactly one of text= (one message for every recipient) or text_column= "
            f"(a per-row message column); got {'both' if text is not None else 'neither'}"
        )
    region = _check_region(default_region)
    check = _check_mode(number_check)
    template = parse_template(text) if isinstance(text, str) else None
    if text is not None and template is None:
        problem = _text_problem(text)
        if problem:
            raise RecipientsError(f"text is unusable: {problem}")
    placeholders = template.columns if template else []
    phones, texts, cells = _columns(recipients, phone_column, text_column, placeholders)

    phone, reasons = normalise_phones(phones, region, number_check=check)
    if template is not None:
        texts, empty = render(template, cells)
        reasons = np.where(pd.isna(reasons), empty, reasons)
    if texts is None:
        codes, categories = np.zeros(len(phones), dtype=np.intp), [text]
    else:
        codes, categories, text_reasons = _check_texts(texts)
        if template is not None:  # the row's own text is what the template made of it
            text_reasons = np.array(
                [r if r is None else f"rendered {r}" for r in text_reasons], dtype=object
            )
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
            "phone": pd.array(phone.iloc[bad].tolist(), dtype=STR),
            "reason": pd.array(reasons[bad].tolist(), dtype=STR),
        }
    )
    copies = pd.DataFrame({"row": rows[dup].astype(np.int64), "phone": kept_phone[dup].array})
    return PreparedRecipients(valid, invalid, int(dup.sum()), len(phones), phones, copies)


def normalise_phones(
    values: pd.Series, region: str | None = None, *, number_check: str = "possible"
) -> tuple[pd.Series, np.ndarray]:
    """Normalise numbers to digits-only E.164 and check them (see the module rules).

    :param number_check: "possible" or "valid", as for :func:`prepare_recipients`.

    Returns the numbers (str Series, positional index, NaN where invalid) and an object array of
    reasons (None where valid).
    """
    check = _check_mode(number_check)
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
    else:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        longest = max(*meta.general_desc.possible_length, *_plan(meta.country_code).lengths)
        national |= bare & (length <= longest)
        prefix, code = meta.national_prefix, str(meta.country_code)
        if prefix and prefix != "0":  # "8 912 345-67-89" with RU
            national |= (
                bare
                & digits.str.startswith(prefix).to_numpy(bool)
                & ~digits.str.startswith(code).to_numpy(bool)
            )
        digits = _parse_with_region(digits, national, region, reasons, check)
    international = pending & isdigit & ~national
    digits = _check_international(digits, international, length, reasons, check)
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


def _check_mode(number_check) -> str:
    """The ``number_check`` value, refused clearly when it is not one we know."""
    if isinstance(number_check, str) and number_check in NUMBER_CHECKS:
        return number_check
    raise RecipientsError(
        f"number_check must be one of {', '.join(map(repr, NUMBER_CHECKS))}; got "
        f"{number_check!r}. 'possible' checks lengths and the country's number shape, 'valid' "
        "also the number ranges in use"
    )


def _columns(
    recipients, phone_column, text_column, placeholders: list[str]
) -> tuple[pd.Series, pd.Series | None, pd.DataFrame]:
    """Pick the phone and text columns, and the template's ``placeholders`` columns, out of
    any accepted input, as positional Series and a positional frame."""
    if isinstance(recipients, pd.DataFrame):
        return _frame_columns(recipients, phone_column, text_column, placeholders)
    if isinstance(recipients, list | tuple) and any(isinstance(r, Mapping) for r in recipients):
        if not all(isinstance(r, Mapping) for r in recipients):
            first = [isinstance(r, Mapping) for r in recipients].index(False)
            raise RecipientsError(
                "recipients mixes dicts and plain values (row "
                f"{first} is {type(recipients[first]).__name__}); use one kind"
            )
        return _dict_columns(recipients, phone_column, text_column, placeholders)
    if isinstance(recipients, pd.Series | list | tuple) and placeholders and len(recipients):
        raise RecipientsError(
            f"text has placeholders {_braced(placeholders)}, but recipients is a "
            f"{type(recipients).__name__} of numbers with no columns to fill them from; pass a "
            "DataFrame or a list of dicts"
        )
    no_cells = pd.DataFrame(columns=placeholders)  # reached with placeholders only when empty
    if isinstance(recipients, pd.Series):
        _no_text_column(text_column, "a Series")
        return recipients.reset_index(drop=True), None, no_cells
    if isinstance(recipients, list | tuple):
        if recipients:
            _no_text_column(text_column, "a list of phone numbers")
        texts = None if text_column is None else pd.Series([], dtype=object)  # [] only here
        return pd.Series(list(recipients), dtype=object), texts, no_cells
    hint = "; wrap a single number in a list" if isinstance(recipients, str | int | float) else ""
    raise RecipientsError(f"recipients must be {ACCEPTED}; got {type(recipients).__name__}{hint}")


def _frame_columns(frame: pd.DataFrame, phone_column, text_column, placeholders: list[str]):
    """Columns of a DataFrame, refusing duplicate or missing column names."""
    if frame.empty and len(frame.columns) == 0:
        texts = None if text_column is None else pd.Series([])
        return pd.Series([], dtype=object), texts, pd.DataFrame(columns=placeholders)
    if not frame.columns.is_unique:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise RecipientsError(f"recipients has duplicate column names: {repeated}; rename them")
    columns = list(frame.columns)
    for role, name in (("phone_column", phone_column), ("text_column", text_column)):
        if name is not None and name not in frame.columns:
            raise RecipientsError(_missing(role, name, columns))
    _check_placeholders(placeholders, columns)
    phones = frame[phone_column].reset_index(drop=True)
    texts = None if text_column is None else frame[text_column].reset_index(drop=True)
    return phones, texts, frame[placeholders].reset_index(drop=True)


def _dict_columns(rows: list, phone_column, text_column, placeholders: list[str]):
    """Columns of a list of dicts; a key missing from a single row is an empty value there."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for role, name in (("phone_column", phone_column), ("text_column", text_column)):
        if name is not None and name not in keys:
            raise RecipientsError(_missing(role, name, keys))
    _check_placeholders(placeholders, keys)
    phones = pd.Series([row.get(phone_column) for row in rows], dtype=object)
    texts = None
    if text_column is not None:
        texts = pd.Series([row.get(text_column) for row in rows], dtype=object)
    cells = pd.DataFrame(
        {name: pd.Series([row.get(name) for row in rows], dtype=object) for name in placeholders}
    )
    return phones, texts, cells


def _check_placeholders(placeholders: list[str], columns: list) -> None:
    """Refuse a template that names columns the recipients do not have, before anything."""
    absent = [name for name in placeholders if name not in columns]
    if absent:
        raise RecipientsError(
            f"text placeholder(s) {_braced(absent)} name no column of recipients; columns are "
            f"{columns}. Rename the placeholder or add the column upstream."
        )


def _braced(names: list[str]) -> str:
    return ", ".join("{" + name + "}" for name in names)


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


# --- the numbering plan -------------------------------------------------------------------------
#
# phonenumbers' metadata, applied to whole columns per country calling code. What it answers for
# one number, it must answer here for the column: the property tests compare the two on random
# numbers. phonenumbers itself runs only on rows the metadata cannot settle in bulk: national
# formats, and international numbers that start with the country's national prefix (parse strips
# or transforms it: "+44 0 7443 332212", "+54 ...").

_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE


def _head_codes() -> dict[str, int]:
    """Country calling code of every head of up to 3 digits ("447" -> 44, "4" -> 0 for none), as
    phonenumbers reads it: the shortest known code wins (codes are prefix-free anyway)."""
    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    out = {}
    for width in (1, 2, 3):
        for i in range(10**width):
            head = f"{i:0{width}d}"
            codes = [int(head[:n]) for n in range(1, width + 1) if head[0] != "0"]
            out[head] = next((c for c in codes if c in known), 0)
    return out


_CODE_OF_HEAD = _head_codes()


@dataclass(frozen=True)
class _Plan:
    """What the numbering plan says about one country calling code."""

    code: int
    label: str  # "+44 (GB)": the code and its main region, whose lengths phonenumbers uses
    lengths: tuple[int, ...]  # possible lengths of a national (significant) number
    status: np.ndarray  # phonenumbers' ValidationResult by national-number length
    general: tuple[re.Pattern, ...]  # general national-number pattern of each region, main first
    regions: tuple[str, ...]
    prefix: re.Pattern | None  # national prefix for parsing of the main region


@cache
def _plan(code: int) -> _Plan:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    main = regions[0]
    meta = _metadata(code, main)
    result = phonenumbers.ValidationResult
    status = np.array(  # phonenumbers parses national numbers of 2 to 17 digits
        [result.TOO_SHORT] * 2
        + [
            phonenumbers.is_possible_number_with_reason(
                phonenumbers.PhoneNumber(country_code=code, national_number=int("5" * n))
            )
            for n in range(2, 18)
        ]
        + [result.TOO_LONG],
        dtype=np.int8,
    )
    metas = [m for m in (_metadata(code, r) for r in regions) if m is not None]
    patterns = dict.fromkeys(m.general_desc.national_number_pattern for m in metas)
    where = "non-geographic" if main == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY else main
    prefix = meta.national_prefix_for_parsing
    return _Plan(
        code=code,
        label=f"+{code} ({where})",
        lengths=tuple(meta.general_desc.possible_length),
        status=status,
        general=tuple(re.compile(p) for p in patterns if p),
        regions=regions,
        prefix=re.compile(prefix) if prefix else None,
    )


def _metadata(code: int, region: str):
    return phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)


def _check_international(
    digits: pd.Series, rows: np.ndarray, length: np.ndarray, reasons: np.ndarray, check: str
) -> pd.Series:
    """Check rows of country code + national number against the numbering plan, per code."""
    where = np.flatnonzero(rows)
    if not len(where):
        return digits
    written = digits.iloc[where]
    heads, distinct = pd.factorize(written.str.slice(0, 3))
    codes = np.array([_CODE_OF_HEAD.get(h, 0) for h in distinct], dtype=np.int64)[heads]
    reasons[where[codes == 0]] = "unknown country code"
    reparsed: dict[int, str] = {}
    for code, pos in _groups(codes):
        if code:
            plan = _plan(code)
            size = length[where[pos]]
            reparsed.update(
                _check_country(plan, where[pos], written.iloc[pos], size, reasons, check)
            )
    if reparsed:
        digits = digits.copy()
        digits.loc[list(reparsed)] = pd.array(list(reparsed.values()), dtype=STR)
    return digits


def _check_country(
    plan: _Plan,
    where: np.ndarray,
    written: pd.Series,
    size: np.ndarray,
    reasons: np.ndarray,
    check: str,
) -> dict[int, str]:
    """Set ``reasons`` at ``where`` for one country code's rows (``size`` digits each); returns
    the rows phonenumbers read differently (a national prefix stripped), position -> digits."""
    nsn = written.str.slice(len(str(plan.code)))
    reparsed = {}
    prefixed = _starts_with_national_prefix(nsn, plan)
    if prefixed.any():
        values = written[prefixed]
        answers = {v: _international_verdict(v, check) for v in pd.unique(values)}
        for row, value in zip(where[prefixed].tolist(), values, strict=True):
            number, reasons[row] = answers[value]
            if number is not None and number != value:
                reparsed[row] = number
        where, nsn, size = where[~prefixed], nsn[~prefixed], size[~prefixed]

    national = size - len(str(plan.code))
    status = plan.status[np.minimum(national, len(plan.status) - 1)]
    bad = status != _POSSIBLE
    for key in set(zip(status[bad].tolist(), national[bad].tolist(), strict=True)):
        reasons[where[(status == key[0]) & (national == key[1])]] = _plan_reason(plan, *key)
    where, nsn, size, national = where[~bad], nsn[~bad], size[~bad], national[~bad]

    fits = _fits_general(nsn, plan.general)
    for n in set(national[~fits].tolist()):
        rows = ~fits & (national == n)
        start = _general_reason(plan, n, "")
        reasons[where[rows]] = (start + nsn[rows].str.slice(0, 3)).to_numpy(object)
    odd = fits & ((size < MIN_DIGITS) | (size > MAX_DIGITS))
    reasons[where[odd]] = [_length_reason(n) for n in size[odd].tolist()]
    if check == "valid":
        ok = fits & ~odd
        unknown = _types(nsn[ok], plan) == _KIND.UNKNOWN  # is_valid_number: a known type
        reasons[where[ok][unknown]] = _invalid_reason(plan)
    return reparsed


def _groups(keys: np.ndarray):
    """(key, positions of that key in order) for each distinct key."""
    if len(keys) and keys.min() == keys.max():  # one country: the usual campaign
        yield int(keys[0]), np.arange(len(keys))
        return
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    bounds = np.flatnonzero(np.diff(ordered)) + 1
    for part in np.split(order, bounds):
        yield int(keys[part[0]]), part


def _fullmatch(s: pd.Series, pattern: str) -> np.ndarray:
    return s.str.fullmatch(f"(?:{pattern})").to_numpy(bool)


def _starts_with_national_prefix(nsn: pd.Series, plan: _Plan) -> np.ndarray:
    """Rows whose national number starts with what phonenumbers may strip as a national prefix
    (or carrier code) even after a country code: they are read by phonenumbers itself."""
    if plan.prefix is None:
        return np.zeros(len(nsn), dtype=bool)
    hit = nsn.str.match(f"(?:{plan.prefix.pattern})").to_numpy(bool, copy=True)
    rows = np.flatnonzero(hit)
    if len(rows):  # the pattern may match nothing at all ("0?(...)?" for +54): that is no prefix
        hit[rows] = [_takes_something(plan.prefix.match(v)) for v in nsn.iloc[rows]]
    return hit


def _takes_something(match: re.Match | None) -> bool:
    return match is not None and (match.end() > 0 or any(g is not None for g in match.groups()))


def _fits_general(nsn: pd.Series, patterns: tuple[re.Pattern, ...]) -> np.ndarray:
    """Rows that fit the general national-number pattern of one of the code's regions."""
    out = np.zeros(len(nsn), dtype=bool)
    todo = np.arange(len(nsn))
    for pattern in patterns:
        if not len(todo):
            break
        hit = _fullmatch(nsn.iloc[todo], pattern.pattern)
        out[todo[hit]] = True
        todo = todo[~hit]
    return out


_KIND = phonenumbers.PhoneNumberType
_TYPE_ORDER = (  # _number_type_helper's order before the fixed-line and mobile checks
    ("premium_rate", _KIND.PREMIUM_RATE),
    ("toll_free", _KIND.TOLL_FREE),
    ("shared_cost", _KIND.SHARED_COST),
    ("voip", _KIND.VOIP),
    ("personal_number", _KIND.PERSONAL_NUMBER),
    ("pager", _KIND.PAGER),
    ("uan", _KIND.UAN),
    ("voicemail", _KIND.VOICEMAIL),
)


def number_types(numbers: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``phonenumbers.number_type`` of digits-only E.164 numbers, a country at a time: the
    calling code of each (0 for none) and its ``PhoneNumberType``. Numbers phonenumbers would
    read differently (a national prefix after the code) go through phonenumbers itself."""
    digits = pd.Series(numbers.astype(object).to_numpy(), dtype=object).astype(str)
    codes = digits.str.slice(0, 3).map(_CODE_OF_HEAD).fillna(0).to_numpy(np.int64)
    kinds = np.full(len(digits), _KIND.UNKNOWN, dtype=np.int64)
    for code in np.unique(codes[codes > 0]).tolist():
        rows = np.flatnonzero(codes == code)
        nsn = digits.iloc[rows].str.slice(len(str(code)))
        plan = _plan(code)
        slow = _starts_with_national_prefix(nsn, plan)
        kinds[rows[~slow]] = _types(nsn[~slow], plan)
        kinds[rows[slow]] = [
            phonenumbers.number_type(phonenumbers.parse("+" + n)) for n in digits.iloc[rows[slow]]
        ]
    return codes, kinds


def _types(nsn: pd.Series, plan: _Plan) -> np.ndarray:
    """``number_type`` for a column of one calling code, with the region picked as
    ``region_code_for_number`` does (leading digits, else the first region the number fits)."""
    if len(plan.regions) == 1:
        meta = _metadata(plan.code, plan.regions[0])
        return _type_helper(nsn, meta) if meta else np.full(len(nsn), _KIND.UNKNOWN)
    out = np.full(len(nsn), _KIND.UNKNOWN, dtype=np.int64)
    todo = np.arange(len(nsn))
    for region in plan.regions:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None or not len(todo):
            continue
        if meta.leading_digits is not None:
            mine = nsn.iloc[todo].str.match(f"(?:{meta.leading_digits})").to_numpy(bool)
            out[todo[mine]] = _type_helper(nsn.iloc[todo[mine]], meta)
        else:
            kinds = _type_helper(nsn.iloc[todo], meta)
            mine = kinds != _KIND.UNKNOWN
            out[todo[mine]] = kinds[mine]
        todo = todo[~mine]
    return out


def _type_helper(nsn: pd.Series, meta) -> np.ndarray:
    """phonenumbers' ``_number_type_helper`` for a column."""
    size = nsn.str.len().to_numpy(np.int64)
    out = np.full(len(nsn), _KIND.UNKNOWN, dtype=np.int64)
    todo = np.flatnonzero(_fits_desc(nsn, size, meta.general_desc))
    for name, kind in _TYPE_ORDER:
        if not len(todo):
            return out
        hit = _fits_desc(nsn.iloc[todo], size[todo], getattr(meta, name))
        out[todo[hit]] = kind
        todo = todo[~hit]
    fixed = _fits_desc(nsn.iloc[todo], size[todo], meta.fixed_line)
    if meta.same_mobile_and_fixed_line_pattern:
        out[todo[fixed]] = _KIND.FIXED_LINE_OR_MOBILE
        return out
    mobile = _fits_desc(nsn.iloc[todo], size[todo], meta.mobile)
    out[todo[fixed & mobile]] = _KIND.FIXED_LINE_OR_MOBILE
    out[todo[fixed & ~mobile]] = _KIND.FIXED_LINE
    out[todo[~fixed & mobile]] = _KIND.MOBILE
    return out


def _fits_desc(nsn: pd.Series, size: np.ndarray, desc) -> np.ndarray:
    """phonenumbers' ``_is_number_matching_desc`` for a column."""
    if desc is None or not desc.national_number_pattern:
        return np.zeros(len(nsn), dtype=bool)
    out = np.isin(size, desc.possible_length) if desc.possible_length else np.ones(len(nsn), bool)
    rows = np.flatnonzero(out)
    if len(rows):
        out[rows] = _fullmatch(nsn.iloc[rows], desc.national_number_pattern)
    return out


def _parse_with_region(
    digits: pd.Series, rows: np.ndarray, region: str, reasons: np.ndarray, check: str
) -> pd.Series:
    """Resolve national or ambiguous bare-digit rows with ``phonenumbers``, once per value."""
    if not rows.any():
        return digits
    subset = digits[rows]
    resolved = {v: _resolve(v, region, check) for v in pd.unique(subset)}
    reasons[rows] = [resolved[v][1] for v in subset]
    digits = digits.copy()
    digits.loc[rows] = pd.array([resolved[v][0] for v in subset], dtype=STR)
    return digits


def _resolve(value: str, region: str, check: str) -> tuple[str | None, str | None]:
    """A national number of ``region``; bare digits without a leading 0 may also be an
    international number without its "+": the reading that is a valid number wins (national
    first), then, with "possible", the first possible one."""
    national = _parse(value, region)
    if value.startswith("0"):
        return _refined(_verdict_of(national, check), value, region)
    international = _parse("+" + value, None)
    for mode in dict.fromkeys(("valid", check)):
        answers = [_verdict_of(national, mode), _verdict_of(international, mode)]
        for answer in answers:
            if answer[0] is not None:
                return answer
    first, second = answers
    return None, f"{_refined(first, value, region)[1]}; as +{value}: {second[1]}"


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    """``phonenumbers.parse``, or the reason it refused ``text``."""
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return _parse_reason(exc, region)


def _verdict_of(
    number: phonenumbers.PhoneNumber | str, check: str
) -> tuple[str | None, str | None]:
    return (None, number) if isinstance(number, str) else _verdict(number, check)


def _refined(answer: tuple[str | None, str | None], value: str, region: str):
    """A refused national number's reason, told about its length without the trunk prefix."""
    if answer[0] is not None:
        return answer
    return None, _trunk_reason(value, region) or answer[1]


def _trunk_reason(value: str, region: str) -> str | None:
    """Why a refused national number is too short or long once its trunk prefix is dropped
    ("07443 33": phonenumbers keeps the 0 when the rest has no possible length)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = meta.national_prefix
    if not prefix or not value.startswith(prefix):
        return None
    plan = _plan(meta.country_code)
    n = len(value) - len(prefix)
    status = plan.status[min(n, len(plan.status) - 1)]
    return None if status == _POSSIBLE else _plan_reason(plan, status, n)


def _international_verdict(digits: str, check: str) -> tuple[str | None, str | None]:
    return _verdict_of(_parse("+" + digits, None), check)


def _verdict(number: phonenumbers.PhoneNumber, check: str) -> tuple[str | None, str | None]:
    """Digits-only E.164 of a parsed number, or why it is refused: the same checks, in the
    same order and words, as the column path (``_check_international``)."""
    nsn = phonenumbers.national_significant_number(number)
    e164 = f"{number.country_code}{nsn}"
    plan = _plan(number.country_code)
    status = phonenumbers.is_possible_number_with_reason(number)
    if status != _POSSIBLE:
        return None, _plan_reason(plan, status, len(nsn))
    if not any(p.fullmatch(nsn) for p in plan.general):
        return None, _general_reason(plan, len(nsn), nsn[:3])
    if not MIN_DIGITS <= len(e164) <= MAX_DIGITS:
        return None, _length_reason(len(e164))
    if check == "valid" and not phonenumbers.is_valid_number(number):
        return None, _invalid_reason(plan)
    return e164, None


def _length_reason(n: int) -> str:
    if n < MIN_DIGITS:
        return f"too short: {n} digits (E.164 needs {MIN_DIGITS}-{MAX_DIGITS})"
    return f"too long: {n} digits (E.164 allows at most {MAX_DIGITS})"


def _plan_reason(plan: _Plan, status: int, n: int) -> str:
    after = f"{n} digit{'' if n == 1 else 's'} after +{plan.code}"
    result = phonenumbers.ValidationResult
    if status == result.IS_POSSIBLE_LOCAL_ONLY:
        return f"too short for {plan.label}: {after} is a local number without its area code"
    if status == result.TOO_SHORT:
        return f"too short for {plan.label}: {after} (at least {plan.lengths[0]})"
    if status == result.TOO_LONG:
        return f"too long for {plan.label}: {after} (at most {plan.lengths[-1]})"
    lengths = ", ".join(map(str, plan.lengths))
    return f"impossible length for {plan.label}: {after} (possible: {lengths})"


def _general_reason(plan: _Plan, n: int, head: str) -> str:
    return f"impossible for {plan.label}: no {n}-digit number there begins with {head}"


def _invalid_reason(plan: _Plan) -> str:
    return f"not a valid number for {plan.label}: in no number range in use"


def _parse_reason(exc: phonenumbers.NumberParseException, region: str | None) -> str:
    kind = phonenumbers.NumberParseException
    if exc.error_type == kind.INVALID_COUNTRY_CODE:
        return "unknown country code"
    where = f" for region {region}" if region else ""
    if exc.error_type in (kind.TOO_SHORT_NSN, kind.TOO_SHORT_AFTER_IDD):
        return "too short" + where
    if exc.error_type == kind.TOO_LONG:
        return "too long" + where
    return "not a phone number" + where


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
