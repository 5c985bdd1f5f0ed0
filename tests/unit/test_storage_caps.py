"""The frequency cap's value: what the operator's ``frequency_cap=`` accepts, and how contacts
are stamped (the windows compare these as text on SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_provider_voxsms.storage.caps import FrequencyCap, stamp


@pytest.mark.parametrize(
    ("value", "cap"),
    [
        (None, None),
        ((1, timedelta(hours=24)), FrequencyCap(1, timedelta(hours=24))),
        ([3, 3600], FrequencyCap(3, timedelta(hours=1))),
        ((2, 0.5), FrequencyCap(2, timedelta(milliseconds=500))),
        (FrequencyCap(1, timedelta(days=7)), FrequencyCap(1, timedelta(days=7))),
    ],
)
def test_a_cap_is_a_count_and_a_window(value, cap):
    assert FrequencyCap.of(value) == cap


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, "frequency_cap is (count, window)"),
        ((1, timedelta(hours=1), 2), "frequency_cap is (count, window)"),
        ("1/day", "frequency_cap is (count, window)"),
        ((0, timedelta(hours=1)), "count must be an integer >= 1, got 0"),
        ((1.5, timedelta(hours=1)), "count must be an integer >= 1, got 1.5"),
        ((True, timedelta(hours=1)), "count must be an integer >= 1, got True"),
        ((1, timedelta(0)), "window must be a positive timedelta (or seconds)"),
        ((1, -60), "window must be a positive timedelta (or seconds), got -60"),
        ((1, "24h"), "window must be a positive timedelta (or seconds), got '24h'"),
    ],
)
def test_a_broken_cap_says_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FrequencyCap.of(value)


def test_stamps_are_utc_to_the_microsecond_and_sort_as_text():
    paris = timezone(timedelta(hours=1))
    assert stamp(datetime(2026, 3, 1, 10, 0, tzinfo=paris)) == "2026-03-01 09:00:00.000000"
    times = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC) + timedelta(microseconds=m) for m in (0, 1)]
    times.append(datetime(2026, 3, 1, 9, 0, 1, tzinfo=UTC))
    assert sorted(map(stamp, times)) == [stamp(t) for t in times]
