"""The delivery report's rows: what it follows, and one row per message as it is done with.

A report on a million messages must not hold a million Python objects. What it follows is
:class:`Followed`: the message ids (sorted, unique int64) and the number each was sent to
(bytes, aligned with the ids), built a block of rows at a time from the send's results table or
from its XCom: about 24 bytes a message. :class:`StatusRows` turns the history rows of the
messages the follower is done with (``DeliveryFollower(on_done=...)``: final, or still pending
in the last round) into rows of ``DELIVERY_COLUMNS``, a block at a time: each block goes to
``write`` (the status table), and is kept only when the rows are wanted in XCom (a campaign
whose messages came through XCom); the summary is tallied as the rows pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.delivery import (
    DELIVERY_COLUMNS,
    PENDING,
    SUMMARY_KEYS,
    UNDELIVERED_STATUSES,
    message_id_of,
    reported_status,
)
from airflow_provider_voxsms.sms.model import FAILED_COLUMNS

BLOCK_ROWS = 10_000  # rows per block handed to ``write``


class Followed:
    """The messages a report follows: ``ids`` (sorted, unique int64) and ``numbers`` (the
    destination each was sent to, as bytes aligned with ``ids``; ``b""`` where none was given).

    Make it with :meth:`from_blocks` (rows read from a table) or :meth:`from_messages` (what a
    send pushed to XCom); an id given twice keeps its first number.
    """

    def __init__(self, ids: np.ndarray, numbers: np.ndarray):
        self.ids = ids
        self.numbers = numbers

    @classmethod
    def of(cls, ids: np.ndarray, numbers: np.ndarray) -> Followed:
        """From aligned arrays in any order, duplicates included."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, numbers = ids[order], numbers[order]
            first = np.concatenate(([True], ids[1:] != ids[:-1]))
            if not first.all():
                ids, numbers = ids[first], numbers[first]
        return cls(ids, numbers)

    @classmethod
    def from_blocks(cls, blocks: Iterable[Sequence[tuple]]) -> Followed:
        """From ``(message_id, destination_number)`` rows, a block at a time (only one block's
        Python objects exist at once); rows without a message id are left out."""
        id_parts, number_parts = [], []
        for rows in blocks:
            ids = np.fromiter((-1 if r[0] is None else r[0] for r in rows), np.int64, len(rows))
            numbers = _number_bytes(r[1] for r in rows)
            kept = ids >= 0
            id_parts.append(ids[kept])
            number_parts.append(numbers[kept])
        if not id_parts:
            return cls.of(np.zeros(0, dtype=np.int64), _number_bytes([]))
        return cls.of(np.concatenate(id_parts), np.concatenate(number_parts))

    @classmethod
    def from_messages(cls, messages: Any) -> Followed:
        """From what :func:`messages_frame` takes (a send's ``accepted_numbers`` frame, a list
        of them, message ids)."""
        frame = messages_frame(messages)
        return cls.of(frame["message_id"].to_numpy(), _number_bytes(frame["destination_number"]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.numbers.nbytes

    def numbers_of(self, ids: np.ndarray) -> list[str | None]:
        """The number each of ``ids`` was sent to; None where not given (or not followed)."""
        where = np.searchsorted(self.ids, ids)
        inside = where < len(self.ids)
        found = np.zeros(len(ids), dtype=bool)
        found[inside] = self.ids[where[inside]] == ids[inside]
        numbers = np.full(len(ids), b"", dtype=self.numbers.dtype)
        numbers[found] = self.numbers[where[found]]
        return [number.decode() if number else None for number in numbers.tolist()]


class StatusRows:
    """One row per followed message (``DELIVERY_COLUMNS``), made as the follower is done with
    each, handed on a block at a time, and tallied for the summary.

    :param followed: what is followed (its numbers come first; the history's fill the gaps).
    :param write: called with each block (a DataFrame), e.g. the status table's ``write``.
    :param keep: keep the blocks too, for :meth:`frame` (rows wanted in XCom).
    :param block_rows: rows per block.
    """

    def __init__(
        self,
        followed: Followed,
        *,
        write: Callable[[pd.DataFrame], Any] | None = None,
        keep: bool = False,
        block_rows: int = BLOCK_ROWS,
    ):
        self.followed = followed
        self.write = write
        self.keep = keep
        self.block_rows = block_rows
        self.rows = 0
        self.counts: dict[str, int] = {}
        self.fragments = 0
        self.cost = 0.0
        self._kept: list[pd.DataFrame] = []
        self._block: dict[str, list] = {column: [] for column in DELIVERY_COLUMNS}

    def add(self, rows: list[dict]) -> None:
        """The history rows of messages done with (each message once; ``on_done``)."""
        ids = np.fromiter(map(message_id_of, rows), dtype=np.int64, count=len(rows))
        given = self.followed.numbers_of(ids)
        for row, number in zip(rows, given, strict=True):
            self._append(
                message_id_of(row),
                number if number is not None else _text(row.get("destination_number")),
                reported_status(row),
                _text(row.get("error_message")),
                _number(row.get("fragments"), int),
                _number(row.get("cost"), float),
                _text(row.get("processing_date")),
            )

    def add_unseen(self, ids: np.ndarray) -> None:
        """Followed messages the history never showed: pending, with what was given."""
        for message_id, number in zip(ids.tolist(), self.followed.numbers_of(ids), strict=True):
            self._append(message_id, number, PENDING, None, None, None, None)

    def close(self) -> None:
        """Hand on the last block."""
        self._flush()

    def frame(self) -> pd.DataFrame:
        """The kept rows (``keep``), by message id."""
        if not self._kept:
            return _block_frame({column: [] for column in DELIVERY_COLUMNS})
        frame = pd.concat(self._kept, ignore_index=True)
        return frame.sort_values("message_id", ignore_index=True)

    @property
    def undelivered(self) -> int:
        """Rows whose final status is not DELIVERED."""
        return sum(self.counts.get(status, 0) for status in UNDELIVERED_STATUSES)

    def summary(self, duration_s: float) -> dict:
        """The report's return value: counts per outcome, and the fragments and cost the
        history reported (of every message it showed, pending ones included)."""
        summary: dict[str, Any] = {"messages": self.rows}
        for status in ("DELIVERED", "FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN"):
            summary[status.lower()] = self.counts.get(status, 0)
        summary["pending"] = self.counts.get(PENDING, 0)
        summary["fragments"] = int(self.fragments)
        summary["cost"] = round(self.cost, 6)
        summary["duration_s"] = round(duration_s, 3)
        return {key: summary[key] for key in SUMMARY_KEYS}

    def _append(self, *values: Any) -> None:
        for column, value in zip(DELIVERY_COLUMNS, values, strict=True):
            self._block[column].append(value)
        status, fragments, cost = values[2], values[4], values[5]
        self.counts[status] = self.counts.get(status, 0) + 1
        self.fragments += fragments or 0
        self.cost += cost or 0.0
        self.rows += 1
        if len(self._block["message_id"]) >= self.block_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._block["message_id"]:
            return
        block = _block_frame(self._block)
        self._block = {column: [] for column in DELIVERY_COLUMNS}
        if self.write is not None:
            self.write(block)
        if self.keep:
            self._kept.append(block)


def _block_frame(columns: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "message_id": np.array(columns["message_id"], dtype=np.int64),
            "destination_number": pd.Series(columns["destination_number"], dtype=object),
            "delivery_status": pd.Series(columns["delivery_status"], dtype=object),
            "error_message": pd.Series(columns["error_message"], dtype=object),
            "fragments": pd.array(columns["fragments"], dtype="Int64"),
            "cost": pd.array(columns["cost"], dtype="Float64"),
            "processing_date": pd.Series(columns["processing_date"], dtype=object),
        }
    )[DELIVERY_COLUMNS]


# -- what to follow, as a send hands it over in XCom ----------------------------------------


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


def _number_bytes(values: Iterable[Any]) -> np.ndarray:
    """Numbers as a bytes array (``b""`` where missing)."""
    texts = [_text(value) for value in values]
    return np.array([text.encode() if text else b"" for text in texts], dtype=np.bytes_)


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
