"""What followed messages came to: delivery statuses, history rows, and the report's outputs.

Statuses: ``QUEUED`` and ``DISPATCHED`` are pending; ``DELIVERED``, ``FAILED``, ``EXPIRED``,
``REJECTED``, ``ABORTED`` and ``UNKNOWN`` are final. A message the history does not show yet
(it can lag behind the send) is pending too; one still pending when the wait ends is reported
``pending``. Following them (the poll loop) is ``sms.follow``; reading the history is
``sms.history``. Also here: the compact text of a campaign's message ids that the report task
hands its trigger through XCom (:func:`encode_ids`).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
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


NO_ID = -1  # message_id_of() for a row that names no message id


def message_id_of(row: dict) -> int:
    """A history row's message id, or ``NO_ID``."""
    try:
        return int(row["message_id"])
    except (KeyError, TypeError, ValueError):
        return NO_ID


def row_status(row: dict) -> str:
    """A history row's status name; ``pending`` when it has none that is known."""
    return status_name(row.get("delivery_status")) or PENDING


def parse_row(row: dict) -> DeliveryRow | None:
    """One history row, or None when it names no message id."""
    message_id = message_id_of(row)
    if message_id == NO_ID:
        return None
    return DeliveryRow(
        message_id=message_id,
        destination_number=_text(row.get("destination_number")),
        delivery_status=row_status(row),
        error_message=_text(row.get("error_message")),
        fragments=_number(row.get("fragments"), int),
        cost=_number(row.get("cost"), float),
        processing_date=_text(row.get("processing_date")),
    )


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


def encode_ids(ids: Iterable[int] | np.ndarray) -> str:
    """Sorted unique ids as zlib-compressed text deltas, base64: a campaign's ids come in runs,
    so a million of them take a few kilobytes; ``decode_ids`` gives them back exactly."""
    values = sorted_ids(ids)
    if not len(values):
        return ""
    deltas = np.diff(values, prepend=np.int64(0))
    text = ",".join(map(str, deltas.tolist())).encode("ascii")
    return base64.b64encode(zlib.compress(text, 6)).decode("ascii")


def sorted_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Ids as a sorted int64 array without duplicates. (``np.unique`` is avoided: numpy 2.4
    hashes, ~50 x slower than sorting a million ids.)"""
    values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
    if len(values) < 2 or np.all(values[1:] > values[:-1]):
        return values
    values = np.sort(values)
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def decode_ids(encoded: str) -> list[int]:
    """The ids ``encode_ids`` encoded, sorted."""
    return decode_id_array(encoded).tolist()


def decode_id_array(encoded: str, piece: int = 1 << 18) -> np.ndarray:
    """:func:`decode_ids` as a sorted int64 array, without a Python object per id. The text is
    parsed ``piece`` bytes at a time, so a thread decoding a large set never holds the GIL
    for more than a few milliseconds at once (an event loop beside it keeps running)."""
    if not encoded:
        return np.zeros(0, dtype=np.int64)
    text = zlib.decompress(base64.b64decode(encoded))
    parts, start = [], 0
    while start < len(text):
        end = text.find(b",", start + piece)
        end = len(text) if end < 0 else end
        parts.append(np.fromstring(text[start:end], dtype=np.int64, sep=","))
        start = end + 1
    return np.cumsum(np.concatenate(parts))


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
