"""Settle open numbers through ``A2PGetSmsHistory``: which did the API take after all?

A number is open when its request may or may not have been processed (a broken connection, a
read timeout, HTTP 5xx) or when an earlier try claimed it and stopped before the answer was
recorded. A history row stands for an open number when it has the same sender and number, was
processed from ``CLOCK_SKEW`` before the request started to ``LATEST_PROCESSING`` after it, has
the same text when the API stored one, and no other number of the campaign has taken it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from airflow_provider_voxsms.sms import history

CLOCK_SKEW = timedelta(minutes=2)
# Latest a request can have been processed after it started: the hook's retries and back-off,
# then the read timeout.
LATEST_PROCESSING = timedelta(minutes=10)


class SmsHistory(Protocol):
    """What the settle step needs of the API (``VoximplantHook`` has it)."""

    def a2p_get_sms_history(self, **filters: Any) -> dict: ...


class Taken(Protocol):
    """Message ids already credited to numbers of the campaign (a set will do)."""

    def __contains__(self, message_id: object) -> bool: ...

    def add(self, message_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class OpenNumber:
    """A number whose request's fate is not known yet.

    ``since``: epoch seconds when its request (or claim) started; ``ready_at``: epoch seconds
    from which the history should show it if it was processed; ``message_id`` when known.
    """

    number: str
    text: str
    since: float
    ready_at: float
    why: str
    message_id: int | None = None


def find_in_history(
    api: SmsHistory,
    open_numbers: Sequence[OpenNumber],
    *,
    src_number: str,
    until: datetime,
    taken: Taken,
) -> dict[int, dict]:
    """Return {position in ``open_numbers``: its history row} for those the history shows (the
    row has the ``message_id``, and ``fragments`` when the API reports them).

    Numbers with a message id are looked up by id. The others are looked up in the window
    their requests span: by reading the sender's whole window when that takes fewer calls than
    one query per destination, else destination by destination, so a busy window is never cut
    short. ``taken`` holds message ids already credited to numbers of this campaign; it grows
    with every match.
    """
    found: dict[int, dict] = {}
    by_id = [i for i, item in enumerate(open_numbers) if item.message_id is not None]
    if by_id:
        ids = [open_numbers[i].message_id for i in by_id]
        known = history.read(history.rows_by_ids(ids), api.a2p_get_sms_history)
        present = {int(row["message_id"]): row for row in known}
        for i in by_id:
            message_id = open_numbers[i].message_id
            if message_id in present and message_id not in taken:
                taken.add(message_id)
                found[i] = present[message_id]
    rest = [i for i in range(len(open_numbers)) if open_numbers[i].message_id is None]
    if not rest:
        return found

    rows: dict[str, list[dict]] = defaultdict(list)
    window = _rows_in_window([open_numbers[i] for i in rest], src_number, until)
    for row in history.read(window, api.a2p_get_sms_history):
        rows[str(row.get("destination_number"))].append(row)
    for i in sorted(rest, key=lambda i: open_numbers[i].since):
        item = open_numbers[i]
        earliest, latest = _window(item.since, until)
        for row in sorted(rows.get(item.number, ()), key=lambda r: int(r["message_id"])):
            message_id, stored_text = int(row["message_id"]), row.get("text")
            if (
                message_id not in taken
                and earliest <= processed_at(row) <= latest
                and (not stored_text or stored_text == item.text)
            ):
                taken.add(message_id)
                found[i] = row
                break
    return found


def _window(since: float, until: datetime) -> tuple[datetime, datetime]:
    started = datetime.fromtimestamp(since, UTC)
    return started - CLOCK_SKEW, min(started + LATEST_PROCESSING, until)


def _rows_in_window(
    items: list[OpenNumber], src_number: str, until: datetime
) -> history.Plan[list[dict]]:
    """The sender's rows in the window ``items`` span: the whole window when reading it takes
    no more calls than one query per destination, else destination by destination."""
    earliest = min(_window(item.since, until)[0] for item in items)
    latest = max(_window(item.since, until)[1] for item in items)
    window = {"source_number": src_number, "from_date": earliest, "to_date": latest}
    probe = {**window, "count": history.HISTORY_PAGE, "offset": 0}
    first = yield probe
    total = int(first.get("total_count") or len(first.get("result") or []))
    numbers: dict[str, list[OpenNumber]] = defaultdict(list)
    for item in items:
        numbers[item.number].append(item)
    if math.ceil(total / history.HISTORY_PAGE) <= len(numbers):
        return (yield from history.pages(probe, first=first))
    rows: list[dict] = []
    for number, same in numbers.items():
        query = {
            "source_number": src_number,
            "destination_number": number,
            "from_date": min(_window(item.since, until)[0] for item in same),
            "to_date": max(_window(item.since, until)[1] for item in same),
        }
        rows += yield from history.pages(query)
    return rows


def processed_at(row: dict) -> datetime:
    """A history row's ``processing_date`` (UTC); rows without a readable date never match."""
    try:
        return datetime.strptime(row["processing_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
