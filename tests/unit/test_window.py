"""Send windows: local time per zone, across midnight, several zones, DST days, and zones that
match phonenumbers' own answer for every region's example numbers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pandas as pd
import phonenumbers
import pytest
from phonenumbers import timezone as phone_timezones

from airflow_provider_voxsms.sms.recipients import number_types
from airflow_provider_voxsms.sms.window import UNKNOWN_ZONE, SendWindow, assess, zones_of


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_start_inclusive_end_exclusive_and_across_midnight():
    day = SendWindow.parse(("09:00", "20:00"))
    assert day.inside(("Europe/London",), at(2026, 12, 1, 9, 0))
    assert not day.inside(("Europe/London",), at(2026, 12, 1, 20, 0))
    night = SendWindow.parse(("21:00", "08:00"))
    assert night.inside(("Europe/London",), at(2026, 12, 1, 23, 0))
    assert night.inside(("Europe/London",), at(2026, 12, 2, 7, 59))
    assert not night.inside(("Europe/London",), at(2026, 12, 2, 8, 0))
    assert night.next_start(("Europe/London",), at(2026, 12, 2, 8, 0)) == at(2026, 12, 2, 21, 0)


def test_several_zones_open_together_or_never():
    window = SendWindow.parse(("09:00", "20:00"))
    both = ("Europe/London", "America/New_York")  # open together 14:00-20:00 UTC in December
    assert window.next_start(both, at(2026, 12, 1, 10, 0)) == at(2026, 12, 1, 14, 0)
    assert window.next_start(both, at(2026, 12, 1, 20, 0)) == at(2026, 12, 2, 14, 0)
    short = SendWindow.parse(("09:00", "12:00"))
    assert short.next_start(("Pacific/Guam", "America/St_Johns"), at(2026, 12, 1, 0, 0)) is None


def test_dst_days_a_skipped_start_opens_at_the_change_and_a_repeated_one_at_its_first():
    window = SendWindow.parse(("02:30", "20:00"))
    berlin = ("Europe/Berlin",)
    assert window.next_start(berlin, at(2025, 3, 29, 23, 0)) == at(2025, 3, 30, 1, 0)
    assert window.next_start(berlin, at(2025, 10, 25, 23, 0)) == at(2025, 10, 26, 0, 30)
    nine = SendWindow.parse(("09:00", "20:00"))
    assert nine.next_start(berlin, at(2025, 3, 29, 23, 0)) == at(2025, 3, 30, 7, 0)


@pytest.mark.parametrize(
    ("window", "words"),
    [
        (("09:00",), "send_window must be"),
        ("09:00-20:00", "send_window must be"),
        (("9am", "20:00"), "HH:MM"),
        (("09:00", "09:00"), "empty window"),
    ],
)
def test_bad_windows_say_what_is_wrong(window, words):
    with pytest.raises(ValueError, match=words):
        SendWindow.parse(window)


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


def test_assess_reports_zone_inside_and_next_start_per_number():
    judged = assess(
        pd.Series(["447443332212", "61291234567", "882167890123"]),
        SendWindow.parse(("09:00", "20:00"), "Asia/Tokyo"),
        at(2026, 12, 1, 14, 30),
    )
    assert judged["inside"].tolist() == [True, False, False]
    assert judged["time_zone"].tolist()[1:] == ["Australia/Sydney", "Asia/Tokyo"]
    assert judged["next_window_start"].tolist()[1:] == [
        at(2026, 12, 1, 22, 0),
        at(2026, 12, 2, 0, 0),
    ]
