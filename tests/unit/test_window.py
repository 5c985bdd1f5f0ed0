"""Send windows: local time per zone, across midnight, several zones, DST days (the zones of
numbers are tested in numbers/test_zones.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from airflow_provider_voxsms.sms.window import SendWindow, assess


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
