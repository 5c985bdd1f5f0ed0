"""Following accepted messages to their final delivery status: the polling core, without I/O.

One poll round asks ``A2PGetSmsHistory`` about the messages that are not final yet, 1,000 ids
per call (``message_id`` as a ``;``-joined list, ``count`` 1000, the API's largest page), so a
round over a million open messages costs about 1,000 calls and every later round only what is
still open. A round is a generator of request parameters (``poll_round``) that the caller feeds
with the API's answers: the worker drives it with the blocking hook (``run_round``), the
trigger with an async client, and both share every decision made here.

Statuses: ``QUEUED`` and ``DISPATCHED`` are pending; ``DELIVERED``, ``FAILED``, ``EXPIRED``,
``REJECTED``, ``ABORTED`` and ``UNKNOWN`` are final. A message the history does not show yet
(it can lag behind the send) is pending too; one still pending when the wait ends is reported
``pending``.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.model import DELIVERY_STATUS_NAMES, FAILED_COLUMNS

STATUS_NAMES = DELIVERY_STATUS_NAMES
PENDING_STATUSES = frozenset({"QUEUED", "DISPATCHED"})
FINAL_STATUSES = frozenset({"DELIVERED", "FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN"})
UNDELIVERED_STATUSES = FINAL_STATUSES - {"DELIVERED"}
PENDING = "pending"  # what a message not final by the end of the wait is reported as

HISTORY_PAGE = 1000  # the most rows A2PGetSmsHistory returns per call
IDS_PER_QUERY = 1000  # one page of rows per call: a round costs ceil(open / 1000) calls

#: Columns of the ``delivery_status`` frame, one row per followed message.
DELIVERY_COLUMNS = [
    "message_id",
    "destination_number",
    "delivery_status",
    "error_message",
    "fragments",
    "cost",
    "processing_date",
]
#: Keys of the operator's return value, in order.
SUMMARY_KEYS = (
    "messages",
    "delivered",
    "failed",
    "expired",
    "rejected",
    "aborted",
    "unknown",
    "pending",
    "fragments",
    "cost",
    "duration_s",
)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """What the history says of one message."""

    message_id: int
    destination_number: str | None
    delivery_status: str
    error_message: str | None
    fragments: int | None
    cost: float | None
    processing_date: str | None

    @property
    def final(self) -> bool:
        return self.delivery_status in FINAL_STATUSES


def status_name(value: Any) -> str | None:
    """A history row's ``delivery_status`` as its name (the API sends a name, older answers
    and filters use the code); None for anything unrecognised, which counts as not final."""
    if value is None:
        return None
    text = str(value).strip().upper()
    if text.isdigit():
        return STATUS_NAMES.get(int(text))
    return text if text in FINAL_STATUSES or text in PENDING_STATUSES else None


def parse_row(row: dict) -> DeliveryRow | None:
    """One history row, or None when it names no message id."""
    try:
        message_id = int(row["message_id"])
    except (KeyError, TypeError, ValueError):
        return None
    return DeliveryRow(
        message_id=message_id,
        destination_number=_text(row.get("destination_number")),
        delivery_status=status_name(row.get("delivery_status")) or PENDING,
        error_message=_text(row.get("error_message")),
        fragments=_number(row.get("fragments"), int),
        cost=_number(row.get("cost"), float),
        processing_date=_text(row.get("processing_date")),
    )


def history_queries(ids: Sequence[int], src_number: str | None = None) -> list[dict[str, Any]]:
    """The ``A2PGetSmsHistory`` parameters that ask about ``ids``: 1,000 ids per call."""
    ids = sorted(set(int(i) for i in ids))
    queries = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        query: dict[str, Any] = {"message_id": ids[start : start + IDS_PER_QUERY]}
        if src_number:
            query["source_number"] = src_number
        query["count"] = HISTORY_PAGE
        query["offset"] = 0
        queries.append(query)
    return queries


# A round: yields request parameters, receives each answer, returns {message_id: row}.
Round = Generator[dict[str, Any], dict, dict[int, DeliveryRow]]


def poll_round(ids: Sequence[int], src_number: str | None = None) -> Round:
    """Ask the history about ``ids`` once; returns the rows it shows, by message id.

    Ids the history does not show are missing from the result (still pending). A call whose
    answer counts more rows than it returned is followed by the next page (``offset``).
    """
    found: dict[int, DeliveryRow] = {}
    for query in history_queries(ids, src_number):
        found.update((yield from query_pages(query)))
    return found


def query_pages(query: dict[str, Any]) -> Round:
    """One history query (at most 1,000 ids), page by page; returns its rows by message id."""
    wanted = set(query["message_id"])
    found: dict[int, DeliveryRow] = {}
    offset = 0
    while True:
        answer = yield {**query, "offset": offset}
        rows = list((answer or {}).get("result") or [])
        for raw in rows:
            row = parse_row(raw)
            if row is not None and row.message_id in wanted:
                found[row.message_id] = row
        total = _number((answer or {}).get("total_count"), int) or 0
        offset += len(rows)
        if not rows or offset >= total:
            return found


def run_round(round_: Generator[dict[str, Any], dict, Any], call: Callable[..., dict]) -> Any:
    """Drive a round (``poll_round``, ``DeliveryTracker.round``) with a blocking
    ``call(**params) -> answer`` (the hook's history call); returns what the round returns."""
    try:
        params = next(round_)
        while True:
            params = round_.send(call(**params))
    except StopIteration as done:
        return done.value


def run_round_concurrently(
    tracker: DeliveryTracker,
    call: Callable[..., dict],
    src_number: str | None = None,
    concurrency: int = 1,
) -> int:
    """One tracker round with up to ``concurrency`` blocking calls in flight (threads); each
    query's rows are applied as it completes. Returns the messages that became final; the
    first failing call's error is raised once the calls already in flight have ended."""
    if concurrency <= 1:
        return run_round(tracker.round(src_number), call)

    def one(query: dict[str, Any]) -> tuple[dict[int, DeliveryRow], int]:
        calls = [0]

        def counted(**params: Any) -> dict:
            calls[0] += 1
            return call(**params)

        return run_round(query_pages(query), counted), calls[0]

    finished = 0
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="voxsms-delivery")
    try:
        futures = [pool.submit(one, query) for query in tracker.queries(src_number)]
        for future in as_completed(futures):
            found, calls = future.result()
            tracker.calls += calls
            finished += tracker.apply(found)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    tracker.rounds += 1
    return finished


def next_delay(
    poll_interval: float, idle_rounds: int, remaining: float, max_interval: float
) -> float:
    """Seconds to wait before the next round.

    ``poll_interval`` after a round that finalised something; each round in a row that
    finalised nothing doubles the wait, up to ``max_interval``; never past the deadline
    (``remaining`` seconds away), so the last round runs when the wait ends.
    """
    delay = min(max_interval, poll_interval * 2 ** max(0, idle_rounds))
    return max(0.0, min(delay, remaining))


class DeliveryTracker:
    """Which followed messages are still open, and what the finished ones came to.

    :param ids: the message ids to follow (duplicates are followed once).
    :param keep_rows: keep every final row (the worker, which writes the outputs); without it
        only counts are kept (the trigger, whose memory should stay flat).
    """

    def __init__(self, ids: Iterable[int], keep_rows: bool = True):
        self.open: set[int] = {int(i) for i in ids}
        self.total = len(self.open)
        self.keep_rows = keep_rows
        self.rows: dict[int, DeliveryRow] = {}
        self.last_seen: dict[int, DeliveryRow] = {}  # pending rows the history showed
        self.counts: dict[str, int] = {}
        self.rounds = 0
        self.calls = 0

    @property
    def done(self) -> bool:
        return not self.open

    def seen(self) -> dict[int, DeliveryRow]:
        """Every row the history showed: the final ones, and the last of each open message."""
        return {**self.last_seen, **self.rows}

    def round(self, src_number: str | None = None) -> Generator[dict[str, Any], dict, int]:
        """A poll round over what is open; each query's rows are applied as they come, so
        memory holds at most one answer besides what the tracker keeps. Returns the number
        of messages that became final."""
        finished = 0
        for query in history_queries(sorted(self.open), src_number):
            finished += self.apply((yield from _counted(query_pages(query), self)))
        self.rounds += 1
        return finished

    def queries(self, src_number: str | None = None) -> list[dict[str, Any]]:
        """The history queries of one round over what is open (for concurrent drivers, which
        run ``query_pages`` per query and ``apply`` each result)."""
        return history_queries(sorted(self.open), src_number)

    def apply(self, found: dict[int, DeliveryRow]) -> int:
        """Record rows the history showed; returns how many messages became final."""
        finished = 0
        for message_id, row in found.items():
            if message_id not in self.open:
                continue
            if not row.final:
                if self.keep_rows:
                    self.last_seen[message_id] = row
                continue
            self.open.discard(message_id)
            self.last_seen.pop(message_id, None)
            self.counts[row.delivery_status] = self.counts.get(row.delivery_status, 0) + 1
            if self.keep_rows:
                self.rows[message_id] = row
            finished += 1
        return finished


def _counted(round_: Round, tracker: DeliveryTracker) -> Round:
    """``round_``, counting its calls on ``tracker``."""
    try:
        params = next(round_)
        while True:
            tracker.calls += 1
            params = round_.send((yield params))
    except StopIteration as done:
        return done.value


# -- what to follow, and what came of it ---------------------------------------------------


def messages_frame(messages: Any) -> pd.DataFrame:
    """What to follow as a frame of ``message_id`` (int64) and ``destination_number``.

    Takes a DataFrame with ``message_id`` (and optionally ``destination_number``, as the send
    task's ``accepted_numbers`` XCom), a list of such frames or dicts (mapped sends), or a
    list of message ids. Duplicate ids are followed once.
    """
    if messages is None:
        frames: list[pd.DataFrame] = []
    elif isinstance(messages, pd.DataFrame):
        frames = [messages]
    elif isinstance(messages, dict):
        frames = [pd.DataFrame([messages])]
    elif isinstance(messages, Iterable) and not isinstance(messages, str | bytes):
        items = list(messages)
        if all(isinstance(item, pd.DataFrame) for item in items) and items:
            frames = items
        elif all(isinstance(item, dict) for item in items) and items:
            frames = [pd.DataFrame(items)]
        elif items and any(isinstance(item, pd.DataFrame | dict) for item in items):
            frames = [messages_frame(item) for item in items]
        else:
            frames = [pd.DataFrame({"message_id": items})]
    else:
        raise TypeError(
            "messages must be a DataFrame with a message_id column, a list of them, or a list "
            f"of message ids; got {type(messages).__name__}"
        )
    out = []
    for frame in frames:
        if frame.empty and "message_id" not in frame.columns:
            continue
        if "message_id" not in frame.columns:
            raise ValueError(
                f"messages need a message_id column; got columns {list(frame.columns)}"
            )
        numbers = (
            frame["destination_number"]
            if "destination_number" in frame.columns
            else pd.Series([None] * len(frame), index=frame.index)
        )
        try:
            ids = pd.to_numeric(frame["message_id"], errors="raise").astype("int64")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"message_id must hold integers: {exc}") from None
        out.append(
            pd.DataFrame(
                {
                    "message_id": ids.to_numpy(),
                    "destination_number": numbers.astype(object).to_numpy(),
                }
            )
        )
    if not out:
        return pd.DataFrame(
            {
                "message_id": pd.Series([], dtype="int64"),
                "destination_number": pd.Series([], dtype=object),
            }
        )
    frame = pd.concat(out, ignore_index=True)
    return frame.drop_duplicates("message_id", ignore_index=True)


def delivery_frame(messages: pd.DataFrame, rows: dict[int, DeliveryRow]) -> pd.DataFrame:
    """One row per followed message (``DELIVERY_COLUMNS``); messages without a final row are
    ``pending`` (with what the history last showed of them, if anything)."""
    ids = messages["message_id"].to_numpy()
    found = [rows.get(int(i)) for i in ids]
    given = messages["destination_number"].to_numpy(dtype=object)

    def column(name: str) -> list:
        return [getattr(row, name) if row is not None else None for row in found]

    numbers = [
        g if g is not None and not _is_missing(g) else (row.destination_number if row else None)
        for g, row in zip(given, found, strict=True)
    ]
    status = [row.delivery_status if row is not None and row.final else PENDING for row in found]
    return pd.DataFrame(
        {
            "message_id": pd.array(ids, dtype="int64"),
            "destination_number": pd.Series(numbers, dtype=object),
            "delivery_status": pd.Series(status, dtype=object),
            "error_message": pd.Series(column("error_message"), dtype=object),
            "fragments": pd.array(column("fragments"), dtype="Int64"),
            "cost": pd.array(column("cost"), dtype="Float64"),
            "processing_date": pd.Series(column("processing_date"), dtype=object),
        }
    )[DELIVERY_COLUMNS]


def failed_numbers(delivery: pd.DataFrame) -> pd.DataFrame:
    """Messages whose final status is not DELIVERED, as failed numbers (``FAILED_COLUMNS``,
    stage ``delivery``); ``error_code`` is empty, ``error_description`` the status and the
    history's ``error_message``."""
    bad = delivery[delivery["delivery_status"].isin(UNDELIVERED_STATUSES)]
    why = bad["delivery_status"].astype(str)
    message = bad["error_message"].fillna("").astype(str)
    description = why.where(message == "", why + ": " + message)
    frame = pd.DataFrame(
        {
            "destination_number": bad["destination_number"].astype(object).to_numpy(),
            "input_number": bad["destination_number"].astype(object).to_numpy(),
            "error_code": pd.array([None] * len(bad), dtype="Int64"),
            "error_description": description.to_numpy(dtype=object),
            "stage": "delivery",
        }
    )
    return frame[FAILED_COLUMNS]


def summarise(delivery: pd.DataFrame, duration_s: float) -> dict:
    """The small return value: counts per outcome, and the fragments and cost the history
    reported (of every message it showed, pending ones included)."""
    counts = delivery["delivery_status"].value_counts()
    summary: dict[str, Any] = {"messages": len(delivery)}
    for status in ("DELIVERED", "FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN"):
        summary[status.lower()] = int(counts.get(status, 0))
    summary["pending"] = int(counts.get(PENDING, 0))
    summary["fragments"] = int(delivery["fragments"].fillna(0).sum())
    summary["cost"] = round(float(delivery["cost"].fillna(0).sum()), 6)
    summary["duration_s"] = round(duration_s, 3)
    return {key: summary[key] for key in SUMMARY_KEYS}


def undelivered_ratio(summary: dict) -> float:
    """Share of followed messages not delivered (final failures and pending)."""
    if not summary["messages"]:
        return 0.0
    return (summary["messages"] - summary["delivered"]) / summary["messages"]


# -- a compact, exact encoding of message ids (the trigger's state) ------------------------


def encode_ids(ids: Iterable[int]) -> str:
    """Sorted unique ids as zlib-compressed text deltas, base64: a campaign's ids come in runs,
    so a million of them take a few kilobytes; ``decode_ids`` gives them back exactly."""
    values = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
    if not len(values):
        return ""
    deltas = np.diff(values, prepend=np.int64(0))
    text = ",".join(map(str, deltas.tolist())).encode("ascii")
    return base64.b64encode(zlib.compress(text, 9)).decode("ascii")


def decode_ids(encoded: str) -> list[int]:
    """The ids ``encode_ids`` encoded, sorted."""
    if not encoded:
        return []
    text = zlib.decompress(base64.b64decode(encoded)).decode("ascii")
    return np.cumsum(np.array(text.split(","), dtype=np.int64)).tolist()


def _text(value: Any) -> str | None:
    if value is None or _is_missing(value):
        return None
    text = str(value)
    return text if text != "" else None


def _number(value: Any, kind: type) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
