"""The per-number path: numbers the column path cannot settle go through ``phonenumbers.parse``.

Those are national-format numbers ("07443 332212" with GB), bare digits that may be national or
international ("7443332212" with GB), and international numbers that repeat the national prefix
after the country code ("+44 0 7443 332212": ``phonenumbers`` strips or transforms it). Each
distinct value is parsed once, and judged by :func:`.verdict.verdict`, so its reason reads as
the column path's would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers

from airflow_provider_voxsms.sms.numbers.plan import plan_of, region_plan
from airflow_provider_voxsms.sms.numbers.verdict import POSSIBLE, UNKNOWN_CODE, plan_reason, verdict
from airflow_provider_voxsms.sms.values import STR

__all__ = ["resolve_international", "resolve_national"]


def resolve_national(
    digits: pd.Series, rows: np.ndarray, region: str, reasons: np.ndarray, check: str
) -> pd.Series:
    """Resolve national or ambiguous bare-digit rows with ``phonenumbers``, once per value; sets
    their ``reasons`` and returns the digits with theirs replaced."""
    if not rows.any():
        return digits
    subset = digits[rows]
    resolved = {v: _resolve(v, region, check) for v in pd.unique(subset)}
    reasons[rows] = [resolved[v][1] for v in subset]
    digits = digits.copy()
    digits.loc[rows] = pd.array([resolved[v][0] for v in subset], dtype=STR)
    return digits


def resolve_international(
    where: np.ndarray, values: pd.Series, reasons: np.ndarray, check: str
) -> dict[int, str]:
    """Judge international numbers (digits after "+") with ``phonenumbers``, once per value;
    sets ``reasons`` at ``where`` and returns the rows it read as other digits, row -> digits."""
    answers = {v: _verdict_of(_parse("+" + v, None), check) for v in pd.unique(values)}
    reparsed = {}
    for row, value in zip(where.tolist(), values, strict=True):
        number, reasons[row] = answers[value]
        if number is not None and number != value:
            reparsed[row] = number
    return reparsed


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
    return (None, number) if isinstance(number, str) else verdict(number, check)


def _refined(answer: tuple[str | None, str | None], value: str, region: str):
    """A refused national number's reason, told about its length without the trunk prefix."""
    if answer[0] is not None:
        return answer
    return None, _trunk_reason(value, region) or answer[1]


def _trunk_reason(value: str, region: str) -> str | None:
    """Why a refused national number is too short or long once its trunk prefix is dropped
    ("07443 33": phonenumbers keeps the 0 when the rest has no possible length)."""
    facts = region_plan(region)
    prefix = facts.national_prefix
    if not prefix or not value.startswith(prefix):
        return None
    plan = plan_of(facts.code)
    n = len(value) - len(prefix)
    status = plan.length_status(n)
    return None if status == POSSIBLE else plan_reason(plan, status, n)


def _parse_reason(exc: phonenumbers.NumberParseException, region: str | None) -> str:
    """Why ``phonenumbers.parse`` refused a value, in our words."""
    kind = phonenumbers.NumberParseException
    if exc.error_type == kind.INVALID_COUNTRY_CODE:
        return UNKNOWN_CODE
    where = f" for region {region}" if region else ""
    if exc.error_type in (kind.TOO_SHORT_NSN, kind.TOO_SHORT_AFTER_IDD):
        return "too short" + where
    if exc.error_type == kind.TOO_LONG:
        return "too long" + where
    return "not a phone number" + where
