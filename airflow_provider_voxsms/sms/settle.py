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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

CLOCK_SKEW = timedelta(minutes=2)
# Latest a request can have been processed after it started: the hook's retries and back-off,
# then the read timeout.
LATEST_PROCESSING = timedelta(minutes=10)
HISTORY_PAGE = 1000  # the most rows A2PGetSmsHistory returns per call
MESSAGE_IDS_PER_QUERY = 100


class SmsHistory(Protocol):
    """What the settle step needs of the API (``VoximplantHook`` has it)."""

    def a2p_get_sms_history(self, **filters: Any) -> dict: ...


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
    history: SmsHistory,
    open_numbers: Sequence[OpenNumber],
    *,
    src_number: str,
    until: datetime,
    taken: set[int],
) -> dict[int, int]:
    """Return {position in ``open_numbers``: message id} for those the history shows.

    Numbers with a message id are looked up by id. The others are looked up in the window
    their requests span: by reading the sender's whole window when that takes fewer calls than
    one query per destination, else destination by destination, so a busy window is never cut
    short. ``taken`` holds message ids already credited to numbers of this campaign; it grows
    with every match.
    """
    found: dict[int, int] = {}
    by_id = [i for i, item in enumerate(open_numbers) if item.message_id is not None]
    if by_id:
        ids = [open_numbers[i].message_id for i in by_id]
        present = {int(row["message_id"]) for row in _rows_by_id(history, ids)}
        for i in by_id:
            message_id = open_numbers[i].message_id
            if message_id in present and message_id not in taken:
                taken.add(message_id)
                found[i] = message_id
    rest = [i for i in range(len(open_numbers)) if open_numbers[i].message_id is None]
    if not rest:
        return found

    rows: dict[str, list[dict]] = defaultdict(list)
    for row in _rows_in_window(history, [open_numbers[i] for i in rest], src_number, until):
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
                found[i] = message_id
                break
    return found


def _window(since: float, until: datetime) -> tuple[datetime, datetime]:
    started = datetime.fromtimestamp(since, UTC)
    return started - CLOCK_SKEW, min(started + LATEST_PROCESSING, until)


def _rows_by_id(history: SmsHistory, ids: list[int]) -> Iterator[dict]:
    for start in range(0, len(ids), MESSAGE_IDS_PER_QUERY):
        chunk = ids[start : start + MESSAGE_IDS_PER_QUERY]
        yield from _pages(history, message_id=chunk)


def _rows_in_window(
    history: SmsHistory, items: list[OpenNumber], src_number: str, until: datetime
) -> Iterator[dict]:
    earliest = min(_window(item.since, until)[0] for item in items)
    latest = max(_window(item.since, until)[1] for item in items)
    window = {"source_number": src_number, "from_date": earliest, "to_date": latest}
    first = history.a2p_get_sms_history(**window, count=HISTORY_PAGE, offset=0)
    rows = first.get("result") or []
    total = int(first.get("total_count") or len(rows))
    numbers: dict[str, list[OpenNumber]] = defaultdict(list)
    for item in items:
        numbers[item.number].append(item)
    if math.ceil(total / HISTORY_PAGE) <= len(numbers):
        yield from rows
        if len(rows) == HISTORY_PAGE:
            yield from _pages(history, **window, first_offset=HISTORY_PAGE)
        return
    for number, same in numbers.items():
        yield from _pages(
            history,
            source_number=src_number,
            destination_number=number,
            from_date=min(_window(item.since, until)[0] for item in same),
            to_date=max(_window(item.since, until)[1] for item in same),
        )


def _pages(history: SmsHistory, first_offset: int = 0, **filters: Any) -> Iterator[dict]:
    """Every row matching ``filters``, page by page until a short page."""
    offset = first_offset
    while True:
        rows = history.a2p_get_sms_history(**filters, count=HISTORY_PAGE, offset=offset)
        rows = rows.get("result") or []
        yield from rows
        if len(rows) < HISTORY_PAGE:
            return
        offset += HISTORY_PAGE


def processed_at(row: dict) -> datetime:
    """A history row's ``processing_date`` (UTC); rows without a readable date never match."""
    try:
        return datetime.strptime(row["processing_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
