"""One verdict per number: the checks a number (country code + national significant number, as
``phonenumbers.parse`` reads it) goes through, in order, and the words of each refusal.

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

The column path (:mod:`.normalise`) and the per-number path (:func:`verdict`, for what
phonenumbers parsed) word refusals with the same functions, so a number gets one reason however
it was written.
"""

from __future__ import annotations

import phonenumbers

from airflow_provider_voxsms.sms.numbers.plan import Plan, plan_of

__all__ = [
    "MAX_DIGITS",
    "MIN_DIGITS",
    "POSSIBLE",
    "UNKNOWN_CODE",
    "general_reason",
    "invalid_reason",
    "length_reason",
    "plan_reason",
    "verdict",
]

MIN_DIGITS, MAX_DIGITS = 8, 15  # what the API routes (E.164 without "+")
POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
UNKNOWN_CODE = "unknown country code"


def verdict(number: phonenumbers.PhoneNumber, check: str) -> tuple[str | None, str | None]:
    """Digits-only E.164 of a parsed number, or why it is refused: the same checks, in the
    same order and words, as the column path."""
    nsn = phonenumbers.national_significant_number(number)
    e164 = f"{number.country_code}{nsn}"
    plan = plan_of(number.country_code)
    status = phonenumbers.is_possible_number_with_reason(number)
    if status != POSSIBLE:
        return None, plan_reason(plan, status, len(nsn))
    if not plan.fits(nsn):
        return None, general_reason(plan, len(nsn), nsn[:3])
    if not MIN_DIGITS <= len(e164) <= MAX_DIGITS:
        return None, length_reason(len(e164))
    if check == "valid" and not phonenumbers.is_valid_number(number):
        return None, invalid_reason(plan)
    return e164, None


def plan_reason(plan: Plan, status: int, n: int) -> str:
    """Why ``n`` digits after the country code are not a possible length there."""
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


def general_reason(plan: Plan, n: int, head: str) -> str:
    """Why a national number of ``n`` digits starting with ``head`` has no place in the plan."""
    return f"impossible for {plan.label}: no {n}-digit number there begins with {head}"


def length_reason(n: int) -> str:
    """Why ``n`` digits in all are outside what E.164 and the API allow."""
    if n < MIN_DIGITS:
        return f"too short: {n} digits (E.164 needs {MIN_DIGITS}-{MAX_DIGITS})"
    return f"too long: {n} digits (E.164 allows at most {MAX_DIGITS})"


def invalid_reason(plan: Plan) -> str:
    """Why a possible number fails ``number_check="valid"``."""
    return f"not a valid number for {plan.label}: in no number range in use"
