"""Normalise phone numbers to digits-only E.164 and check them, a whole column at a time.

A value is first turned into digits (:mod:`.digits`). Which way the digits are read:

* A leading "+" or "00": international.
* A leading single "0" marks a national number. Without ``default_region`` it is invalid
  ("national format: set default_region"); with it, ``phonenumbers`` parses it for that region.
* Other bare digits (and ints, floats) are international when no ``default_region`` is given.
  With one, bare digits longer than the longest national number of the region's country code
  (10 for GB and US) are international; shorter ones, and those starting with a national prefix
  other than 0 ("8 912 345-67-89" with RU), may be either: the reading that is a valid number
  wins, national first, then (with ``number_check="possible"``) the first possible reading
  ("7443332212" with GB -> 447443332212; "3612345678" with GB -> 3612345678, Hungary).

International numbers are checked per calling code against the numbering plan (:mod:`.plan`),
in the order and words of :mod:`.verdict`; national ones, and those that repeat the national
prefix after the country code, take the per-number path (:mod:`.resolve`). The result is
digits-only E.164 without "+": what ``phonenumbers`` formats as E.164 (a national prefix after
the country code is dropped where the plan says so; Italy keeps its leading 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.numbers.digits import Digits, digits_of
from airflow_provider_voxsms.sms.numbers.plan import (
    Plan,
    calling_codes,
    fits_general,
    in_use,
    known_region,
    plan_of,
    region_plan,
    starts_with_national_prefix,
)
from airflow_provider_voxsms.sms.numbers.resolve import resolve_international, resolve_national
from airflow_provider_voxsms.sms.numbers.verdict import (
    MAX_DIGITS,
    MIN_DIGITS,
    POSSIBLE,
    UNKNOWN_CODE,
    general_reason,
    invalid_reason,
    length_reason,
    plan_reason,
)
from airflow_provider_voxsms.sms.values import STR

__all__ = ["NUMBER_CHECKS", "check_mode", "check_region", "normalise_phones"]

NUMBER_CHECKS = ("possible", "valid")


def normalise_phones(
    values: pd.Series, region: str | None = None, *, number_check: str = "possible"
) -> tuple[pd.Series, np.ndarray]:
    """Normalise numbers to digits-only E.164 and check them (see the module rules).

    :param number_check: "possible" or "valid", as for ``prepare_recipients``.

    Returns the numbers (str Series, positional index, NaN where invalid) and an object array of
    reasons (None where valid).
    """
    check = check_mode(number_check)
    written = digits_of(values.reset_index(drop=True))
    digits, reasons = written.digits, written.reasons
    national = _national(written, region)
    if region is None:
        reasons[national] = "national format: set default_region"
    else:
        digits = resolve_national(digits, national, region, reasons, check)
    international = written.usable & ~national
    digits = _check_international(digits, international, written.length, reasons, check)
    return digits.where(pd.isna(reasons)), reasons


def check_region(region: str | None) -> str | None:
    """Upper-case a region code and make sure ``phonenumbers`` knows it."""
    if region is None:
        return None
    code = str(region).strip().upper()
    if not known_region(code):
        raise RecipientsError(
            f"default_region {region!r} is not a known region; use an ISO 3166-1 alpha-2 code "
            "such as 'GB' or 'US'"
        )
    return code


def check_mode(number_check) -> str:
    """The ``number_check`` value, refused clearly when it is not one we know."""
    if isinstance(number_check, str) and number_check in NUMBER_CHECKS:
        return number_check
    raise RecipientsError(
        f"number_check must be one of {', '.join(map(repr, NUMBER_CHECKS))}; got "
        f"{number_check!r}. 'possible' checks lengths and the country's number shape, 'valid' "
        "also the number ranges in use"
    )


def _national(written: Digits, region: str | None) -> np.ndarray:
    """Rows to read as national numbers: a leading 0, and with a ``region`` the bare digits that
    may be one of its national numbers (short enough, or after a national prefix other than 0)."""
    digits = written.digits
    bare = written.usable & ~written.international
    national = bare & digits.str.startswith("0").to_numpy(bool)
    if region is None:
        return national
    bare &= ~national
    facts = region_plan(region)
    national |= bare & (written.length <= facts.longest)
    prefix, code = facts.national_prefix, str(facts.code)
    if prefix and prefix != "0":  # "8 912 345-67-89" with RU
        national |= (
            bare
            & digits.str.startswith(prefix).to_numpy(bool)
            & ~digits.str.startswith(code).to_numpy(bool)
        )
    return national


def _check_international(
    digits: pd.Series, rows: np.ndarray, length: np.ndarray, reasons: np.ndarray, check: str
) -> pd.Series:
    """Check rows of country code + national number against the numbering plan, per code."""
    where = np.flatnonzero(rows)
    if not len(where):
        return digits
    written = digits.iloc[where]
    codes = calling_codes(written)
    reasons[where[codes == 0]] = UNKNOWN_CODE
    reparsed: dict[int, str] = {}
    for code, pos in _groups(codes):
        if code:
            plan = plan_of(code)
            size = length[where[pos]]
            reparsed.update(
                _check_country(plan, where[pos], written.iloc[pos], size, reasons, check)
            )
    if reparsed:
        digits = digits.copy()
        digits.loc[list(reparsed)] = pd.array(list(reparsed.values()), dtype=STR)
    return digits


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


def _check_country(
    plan: Plan,
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
    prefixed = starts_with_national_prefix(nsn, plan)
    if prefixed.any():
        reparsed = resolve_international(where[prefixed], written[prefixed], reasons, check)
        where, nsn, size = where[~prefixed], nsn[~prefixed], size[~prefixed]

    national = size - len(str(plan.code))
    possible = _check_lengths(plan, where, national, reasons)
    where, nsn, size, national = where[possible], nsn[possible], size[possible], national[possible]
    _check_shapes(plan, where, nsn, size, national, reasons, check)
    return reparsed


def _check_lengths(
    plan: Plan, where: np.ndarray, national: np.ndarray, reasons: np.ndarray
) -> np.ndarray:
    """Refuse rows whose national number has a length the plan does not allow; the others."""
    status = plan.length_status(national)
    bad = status != POSSIBLE
    for key in set(zip(status[bad].tolist(), national[bad].tolist(), strict=True)):
        reasons[where[(status == key[0]) & (national == key[1])]] = plan_reason(plan, *key)
    return ~bad


def _check_shapes(
    plan: Plan,
    where: np.ndarray,
    nsn: pd.Series,
    size: np.ndarray,
    national: np.ndarray,
    reasons: np.ndarray,
    check: str,
) -> None:
    """Refuse rows of possible length that fit none of the code's general patterns, are outside
    8-15 digits in all, or (with "valid") in no number range in use."""
    fits = fits_general(nsn, plan)
    for n in set(national[~fits].tolist()):
        rows = ~fits & (national == n)
        start = general_reason(plan, n, "")
        reasons[where[rows]] = (start + nsn[rows].str.slice(0, 3)).to_numpy(object)
    odd = fits & ((size < MIN_DIGITS) | (size > MAX_DIGITS))
    reasons[where[odd]] = [length_reason(n) for n in size[odd].tolist()]
    if check == "valid":
        ok = fits & ~odd
        reasons[where[ok][~in_use(nsn[ok], plan)]] = invalid_reason(plan)
