"""Send windows in each recipient's local time: who may be texted now, and when the rest may.

A number's time zones come from :func:`.numbers.zones_of` (phonenumbers' answer, a country at a
time); this module only does the clock arithmetic. A number with several zones (a US toll-free
number, a Russian mobile) is inside the window only when it is inside in all of them; a number
with no known zone uses the window's ``fallback_zone``. Windows are ``[start, end)`` in local
wall-clock time and may cross midnight (``("21:00", "08:00")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.numbers import zones_of

_HORIZON_DAYS = 3  # window openings looked at: enough for any zone set across a DST change


def utc_now() -> datetime:
    """The current time; the one clock windows are judged by (tests replace it)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SendWindow:
    """Local hours ``[start, end)`` in which a recipient may be texted."""

    start: time
    end: time
    fallback_zone: str = "UTC"

    @classmethod
    def parse(cls, window, fallback_zone: str = "UTC") -> SendWindow:
        """From ``("09:00", "20:00")`` (or ``datetime.time`` values) and a zone name.

        :raises ValueError: naming what is wrong with the window or the zone.
        """
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise ValueError(
                f'send_window must be (start, end) such as ("09:00", "20:00"), got {window!r}'
            )
        start, end = (_clock_time(value) for value in window)
        if start == end:
            raise ValueError(
                f"send_window starts and ends at {start:%H:%M}: an empty window sends nothing; "
                "leave send_window unset to send at any hour"
            )
        _zone(fallback_zone)
        return cls(start, end, fallback_zone)

    def inside(self, zones: tuple[str, ...], at: datetime) -> bool:
        """Whether ``at`` is inside the window in every one of ``zones``."""
        return all(self._inside_local(at.astimezone(_zone(zone)).time()) for zone in zones)

    def next_start(self, zones: tuple[str, ...], at: datetime) -> datetime | None:
        """The first moment at or after ``at`` inside the window in all ``zones`` (UTC), or
        None when their windows never overlap (zones too far apart for the window)."""
        if self.inside(zones, at):
            return at.astimezone(UTC)
        openings = sorted(
            opening for zone in zones for opening in self._openings(_zone(zone), at) if opening > at
        )
        return next((o.astimezone(UTC) for o in openings if self.inside(zones, o)), None)

    def _inside_local(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight

    def _openings(self, zone: ZoneInfo, at: datetime) -> list[datetime]:
        day = at.astimezone(zone).date()
        return [self._opening(day + timedelta(days=n), zone) for n in range(-1, _HORIZON_DAYS)]

    def _opening(self, day, zone: ZoneInfo) -> datetime:
        """When the window opens on ``day`` in ``zone`` (UTC). A start the clocks skip on a
        spring-forward day opens the window at the change, the first moment past it."""
        local = datetime.combine(day, self.start, tzinfo=zone)
        first = local.replace(fold=0).astimezone(UTC)  # the earlier of a repeated hour
        if first.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
            return first
        low, high = local.replace(fold=1).astimezone(UTC), first  # the gap lies between
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(zone).time() >= self.start:
                high = middle
            else:
                low = middle
        return high.replace(microsecond=0)


def assess(numbers: pd.Series, window: SendWindow, now: datetime) -> pd.DataFrame:
    """Per number (digits-only E.164): ``time_zone`` (its zones, comma-separated),
    ``inside`` (bool) and ``next_window_start`` (UTC datetime; None when never).

    Each distinct zone set is judged once, so a million numbers cost a few table look-ups.
    """
    zones = zones_of(numbers, window.fallback_zone)
    codes, zone_sets = pd.factorize(zones, sort=False)
    starts = [window.next_start(zone_set, now) for zone_set in zone_sets]
    names = np.array([", ".join(zone_set) for zone_set in zone_sets], dtype=object)
    start = np.array(starts + [None], dtype=object)[codes]
    inside = np.array([s is not None and s <= now for s in starts] + [False], dtype=bool)
    return pd.DataFrame(
        {
            "time_zone": names[codes],
            "inside": inside[codes],
            "next_window_start": pd.Series(start, index=numbers.index, dtype=object),
        },
        index=numbers.index,
    )


def _clock_time(value) -> time:
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f'send_window times are "HH:MM" (24-hour) or datetime.time, got {value!r}')


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/London'"
        ) from None
