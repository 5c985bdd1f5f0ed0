"""What followed messages came to: delivery statuses, history rows, and the ids' compact text.

Statuses: ``QUEUED`` and ``DISPATCHED`` are pending; ``DELIVERED``, ``FAILED``, ``EXPIRED``,
``REJECTED``, ``ABORTED`` and ``UNKNOWN`` are final. A message the history does not show yet
(it can lag behind the send) is pending too; one still pending when the wait ends is reported
``pending``. Following them (the poll loop) is ``sms.follow``; reading the history is
``sms.history``; the report's rows and outputs are ``sms.delivery_rows``. Also here: the
compact text of a campaign's message ids that the report task hands its trigger through XCom
(:func:`encode_ids`).

Nothing here imports pandas: the follower and the trigger load this in the triggerer, whose
event loop every deferred task of a deployment shares.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from airflow_provider_voxsms.sms.model import DELIVERY_STATUS_NAMES

STATUS_NAMES = DELIVERY_STATUS_NAMES
PENDING_STATUSES = frozenset({"QUEUED", "DISPATCHED"})
FINAL_STATUSES = frozenset({"DELIVERED", "FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN"})
UNDELIVERED_STATUSES = FINAL_STATUSES - {"DELIVERED"}
PENDING = "pending"  # what a message not final by the end of the wait is reported as

#: Columns of the ``delivery_status`` rows, one per followed message.
DELIVERY_COLUMNS = [
    "message_id",
    "destination_number",
    "delivery_status",
    "error_message",
    "fragments",
    "cost",
    "processing_date",
]
#: Keys of the report's return value, in order.
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


def reported_status(row: dict) -> str:
    """What the report says of a message the history shows as ``row``: its final status, or
    ``pending``."""
    status = row_status(row)
    return status if status in FINAL_STATUSES else PENDING


def undelivered_ratio(summary: dict) -> float:
    """Share of followed messages not delivered (final failures and pending)."""
    if not summary["messages"]:
        return 0.0
    return (summary["messages"] - summary["delivered"]) / summary["messages"]


# -- a compact, exact encoding of message ids (the trigger's state) ------------------------

_PIECE_IDS = 1 << 16  # ids formatted per piece: no Python object per id of a large set at once


def encode_ids(ids: Iterable[int] | np.ndarray) -> str:
    """Sorted unique ids as zlib-compressed text deltas, base64: a campaign's ids come in runs,
    so a million of them take a few kilobytes; ``decode_ids`` gives them back exactly. The text
    is made and compressed a piece at a time, so a million ids never exist as a million Python
    objects at once."""
    values = sorted_ids(ids)
    if not len(values):
        return ""
    deltas = np.diff(values, prepend=np.int64(0))
    packer = zlib.compressobj(6)
    parts = []
    for start in range(0, len(deltas), _PIECE_IDS):
        text = ",".join(map(str, deltas[start : start + _PIECE_IDS].tolist()))
        parts.append(packer.compress((("," if start else "") + text).encode("ascii")))
    parts.append(packer.flush())
    return base64.b64encode(b"".join(parts)).decode("ascii")


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
