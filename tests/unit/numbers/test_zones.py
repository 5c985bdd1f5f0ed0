"""Number types and time zones a country at a time: phonenumbers' own answer for every
region's example numbers."""

from __future__ import annotations

import random

import pandas as pd
import phonenumbers
from phonenumbers import timezone as phone_timezones

from airflow_provider_voxsms.sms.numbers import UNKNOWN_ZONE, number_types, zones_of


def _numbers_of_every_region() -> list[str]:
    """Every region's example number of every type, and variants with random last digits (in
    and out of the ranges in use), digits-only E.164."""
    rng = random.Random(7)
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):  # every PhoneNumberType with examples
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
            numbers.append(digits)
            for _ in range(4):
                k = rng.randint(1, 4)
                numbers.append(digits[:-k] + "".join(rng.choice("0123456789") for _ in range(k)))
    return list(dict.fromkeys(numbers))


def test_types_and_zones_are_phonenumbers_answer_for_numbers_of_every_region():
    numbers = _numbers_of_every_region()
    parsed = [phonenumbers.parse("+" + n) for n in numbers]
    _, kinds = number_types(pd.Series(numbers))
    assert kinds.tolist() == [phonenumbers.number_type(p) for p in parsed]
    expected = [
        tuple(z for z in phone_timezones.time_zones_for_number(p) if z != UNKNOWN_ZONE) or ("UTC",)
        for p in parsed
    ]
    got = zones_of(pd.Series(numbers), "UTC").tolist()
    wrong = [(n, e, g) for n, e, g in zip(numbers, expected, got, strict=True) if e != g]
    assert len(numbers) > 4000 and not wrong, wrong[:5]
