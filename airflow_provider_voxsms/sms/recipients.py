"""Prepare SMS recipients before anything is sent: take the phone and text columns out of any
accepted input, normalise and check the numbers, check the texts, drop repeated pairs.

Numbers are normalised by :mod:`.numbers` (digits-only E.164, with a reason per refused row).
Texts: empty or whitespace-only, longer than ``MAX_TEXT_LENGTH`` characters, containing lone
surrogates (not encodable) or control characters other than tab, newline, carriage return and
form feed (form feed is a GSM 03.38 character) are refused: a single ``text`` raises
``RecipientsError``; rows of a ``text_column`` become invalid rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.numbers import check_mode, check_region, normalise_phones
from airflow_provider_voxsms.sms.segments import MAX_TEXT_LENGTH
from airflow_provider_voxsms.sms.smart_encoding import encode_texts
from airflow_provider_voxsms.sms.templates import Template, parse_template, render
from airflow_provider_voxsms.sms.values import STR, encodable, is_missing, is_null_marker
from airflow_provider_voxsms.sms.variants import Variants, variant_texts
from airflow_provider_voxsms.sms.variants import placeholders as variant_placeholders

__all__ = ["PreparedRecipients", "RecipientsError", "prepare_recipients"]

ACCEPTED = (
    "a pandas DataFrame, a pandas Series, a list or tuple of phone numbers (str, int, float or "
    "None), or a list of dicts (one dict per row)"
)
DEDUPE = ("number", "number_and_text")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # all but \t \n \f \r


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
    # numbers whose dropped copies had another text (dedupe by number), once each
    differing: pd.Series | None = None

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
            self.differing,
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
    dedupe: str = "number",
    smart_encoding: bool = False,
    variants: Variants | None = None,
) -> PreparedRecipients:
    """Normalise phone numbers, check texts and drop repeated rows: one message per number
    (``dedupe="number"``), or per number and text.

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
    :param dedupe: ``"number"``: a number's first valid row wins and later rows are duplicates
        whatever their text (``differing`` lists the numbers whose copies had another text);
        ``"number_and_text"``: a number may get several different texts.
    :param smart_encoding: replace look-alike characters that alone make a text UCS-2 (see
        :mod:`.smart_encoding`); ``valid`` then has ``smart_saved``: the segments each row's
        message saves, -1 where its text is unchanged.
    :param variants: texts by variant instead of ``text``/``text_column``: each row gets its
        number's variant's text, and ``valid`` has ``variant`` (``holdout`` for the hold-out
        group, whose rows carry the first variant's text and are not to be sent).
    :raises RecipientsError: for input that cannot be used at all (wrong type, missing column,
        bad single text, unknown region, unknown ``number_check``). Bad rows are reported in
        ``invalid`` instead.
    """
    if variants is not None:
        text_column = None
    elif (text is None) == (text_column is None):
        raise RecipientsError(
            "give exactly one of text= (one message for every recipient) or text_column= "
            f"(a per-row message column); got {'both' if text is not None else 'neither'}"
        )
    region = check_region(default_region)
    check = check_mode(number_check)
    template = _template_of(text) if variants is None else None
    placeholders = template.columns if template else []
    if variants is not None:
        placeholders = variant_placeholders(variants)
    phones, texts, cells = _columns(recipients, phone_column, text_column, placeholders)
    if dedupe not in DEDUPE:
        raise RecipientsError(f"dedupe is one of {DEDUPE}, got {dedupe!r}")
    phone, reasons = normalise_phones(phones, region, number_check=check)
    assigned = None
    if variants is not None:
        texts, empty, assigned = variant_texts(variants, phone, cells)
        reasons = np.where(pd.isna(reasons), empty, reasons)
    codes, categories, reasons = _text_codes(text, texts, template, cells, reasons)
    saved = None
    if smart_encoding:
        codes, categories, saved = encode_texts(codes, categories)
    prepared = _split(phones, phone, reasons, codes, categories, by_number=dedupe == "number")
    rows = prepared.valid.index.to_numpy()
    if saved is not None:
        prepared.valid["smart_saved"] = saved[rows]
    if assigned is not None:
        prepared.valid["variant"] = assigned.take(rows)
    return prepared


def _template_of(text) -> Template | None:
    """The template of a single ``text`` (None when it has no placeholders, or for a text
    column), refusing a single text that cannot be sent before any row is looked at."""
    template = parse_template(text) if isinstance(text, str) else None
    if text is not None and template is None:
        problem = _text_problem(text)
        if problem:
            raise RecipientsError(f"text is unusable: {problem}")
    return template


def _text_codes(
    text, texts: pd.Series | None, template: Template | None, cells: pd.DataFrame, reasons
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Each row's text as a code into the distinct usable texts, those texts, and the rows'
    reasons with the texts' problems added where the number was fine."""
    if template is not None:
        texts, empty = render(template, cells)
        reasons = np.where(pd.isna(reasons), empty, reasons)
    if texts is None:
        return np.zeros(len(reasons), dtype=np.intp), [text], reasons
    codes, categories, text_reasons = _check_texts(texts)
    if template is not None:  # the row's own text is what the template made of it
        text_reasons = np.array(
            [r if r is None else f"rendered {r}" for r in text_reasons], dtype=object
        )
    return codes, categories, np.where(pd.isna(reasons), text_reasons, reasons)


def _split(
    phones: pd.Series,
    phone: pd.Series,
    reasons: np.ndarray,
    codes: np.ndarray,
    categories: list[str],
    *,
    by_number: bool,
) -> PreparedRecipients:
    """Rows without a reason, first of each number (or of each number and text), are valid;
    the rest invalid or dropped copies."""
    ok = pd.isna(reasons)
    rows = np.flatnonzero(ok)
    kept_phone = phone.iloc[rows].reset_index(drop=True)
    differing = None
    if len(categories) == 1:
        dup = kept_phone.duplicated().to_numpy()
    else:
        pairs = pd.DataFrame({"p": kept_phone, "t": codes[rows]})
        dup = (kept_phone.duplicated() if by_number else pairs.duplicated()).to_numpy()
        if by_number:
            distinct = pairs.drop_duplicates()["p"]
            differing = distinct[distinct.duplicated()].drop_duplicates()
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
    return PreparedRecipients(
        valid, invalid, int(dup.sum()), len(phones), phones, copies, differing
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
    # A cell "NULL", "\\N", ... (a CSV read as text) is a missing text, as code -1 is.
    problems = [_text_problem(u) or _marker_problem(u) for u in uniques] + ["empty text"]
    reasons = np.array(problems, dtype=object)[codes]
    good = np.array([p is None for p in problems[:-1]], dtype=bool)
    remap = np.full(len(uniques) + 1, -1, dtype=np.intp)
    remap[np.flatnonzero(good)] = np.arange(good.sum())
    return remap[codes], [u for u, g in zip(uniques, good, strict=True) if g], reasons


def _text_problem(text) -> str | None:
    """Why a message text cannot be sent, or None."""
    if not isinstance(text, str):
        return "empty text" if is_missing(text) else f"text is not a string: {type(text).__name__}"
    if not text.strip():
        return "empty text" if not text else "empty text (whitespace only)"
    if len(text) > MAX_TEXT_LENGTH:
        return f"text too long: {len(text)} characters (limit {MAX_TEXT_LENGTH})"
    if not encodable(text):
        return "text cannot be encoded (lone surrogate)"
    if m := _CONTROL.search(text):
        return f"text contains control character U+{ord(m.group()):04X}"
    return None


def _marker_problem(text) -> str | None:
    """The reason of a cell holding a null marker ("NULL", ...): a single ``text`` is taken
    as given, only column cells can be missing."""
    return "empty text" if is_null_marker(text) else None


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _categorical(codes: np.ndarray, categories: list[str]) -> pd.Categorical:
    """Texts as a categorical: one stored copy per distinct text."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=STR))


def _originals(values: pd.Series, rows: np.ndarray) -> list[str]:
    """The refused input values as ``str()`` shows them (lone surrogates escaped); a missing
    value (None, NaN, NA, a null marker such as "NULL") as an empty string."""
    return [
        ""
        if is_missing(v) or is_null_marker(v)
        else str(v).encode("utf-8", "backslashreplace").decode("utf-8")
        for v in values.iloc[rows].to_numpy(object)
    ]
