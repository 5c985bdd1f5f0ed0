"""What earlier tries of a campaign claimed and learnt, held compactly for a retry.

A retry of a million-recipient campaign must not hold a million Python strings. The ledger's
claims and outcomes are read a block of rows at a time; every number claimed becomes one entry
of sorted numpy arrays: its key (the number as an integer, exact for normalised numbers of at
most 15 digits, and its text's hash, 16 hex characters, as a 64-bit integer: 16 bytes), its
first claim's time, its most definite status (int8), its message id, and for failures an index
into a list of the distinct (code, description) pairs: about 40 bytes a number. A chunk of
recipients then asks :meth:`EarlierTries.of` what earlier tries knew of exactly its rows, in
the shape :func:`~airflow_provider_voxsms.sms.resume.resume` takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.model import (
    ACCEPTED,
    FAILED,
    IN_FLIGHT,
    UNKNOWN,
    text_hash,
)
from airflow_provider_voxsms.storage.codec import decode_outcome

# What EarlierTries.of() returns: one row per number and text an earlier try claimed.
COLUMNS = (
    "destination_number",
    "text_hash",
    "status",
    "message_id",
    "error_code",
    "error_description",
    "claimed_at",
)
# A status's code is its precedence: when a number has outcomes from several rows (a batch
# said unknown, a later settle round found it or sent it again), the most definite wins.
STATUSES = np.array([IN_FLIGHT, UNKNOWN, FAILED, ACCEPTED], dtype=object)
_CODES = {status: code for code, status in enumerate(STATUSES)}
_FAILED, _ACCEPTED = _CODES[FAILED], _CODES[ACCEPTED]


class ClaimsReader:
    """Collects claim rows (``text_hash``, numbers as JSON, ``claimed_at``), in claim order."""

    def __init__(self) -> None:
        self._numbers: list[np.ndarray] = []
        self._texts: list[np.ndarray] = []
        self._claimed_at: list[np.ndarray] = []

    def add(self, rows: list[tuple]) -> None:
        numbers: list[str] = []
        texts, sizes, times = [], [], []
        for tx, raw, at in rows:
            batch = json.loads(raw)
            numbers += batch
            texts.append(int(tx, 16))
            sizes.append(len(batch))
            times.append(at)
        self._numbers.append(as_ints(numbers))
        self._texts.append(np.repeat(np.array(texts, dtype=np.uint64), sizes))
        self._claimed_at.append(np.repeat(_epoch_seconds(times), sizes))

    def finish(self) -> EarlierTries:
        """The index: one entry per number and text, dated from its first claim."""
        numbers = _concat(self._numbers, np.int64)
        texts = _concat(self._texts, np.uint64)
        claimed_at = _concat(self._claimed_at, np.float64)
        self._numbers, self._texts, self._claimed_at = [], [], []
        order = np.lexsort((texts, numbers))  # stable: a key's first claim stays first
        keys = pack(numbers[order], texts[order])
        del numbers, texts
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]  # claimed again in a settle round: keep the first
        return EarlierTries(keys[first], claimed_at[order][first])


class EarlierTries:
    """Every number and text earlier tries claimed, with the most definite outcome recorded.

    Built by :class:`ClaimsReader`, then :meth:`add_outcomes` per block of outcome rows.
    """

    def __init__(self, keys: np.ndarray, claimed_at: np.ndarray) -> None:
        self.keys, self.claimed_at = keys, claimed_at  # keys sorted, unique
        self.status = np.zeros(len(keys), dtype=np.int8)  # in_flight until an outcome says
        self.message_id = np.zeros(len(keys), dtype=np.int64)
        self.failure = np.full(len(keys), -1, dtype=np.int32)
        self._failures: dict[tuple, int] = {}  # (code, description) -> index
        self._failure_columns: tuple[pd.arrays.IntegerArray, np.ndarray] | None = None

    @classmethod
    def empty(cls) -> EarlierTries:
        return ClaimsReader().finish()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def settled(self) -> int:
        """Numbers an earlier try saw accepted or failed: not sent again."""
        return int(np.count_nonzero(self.status >= _FAILED))

    @property
    def open(self) -> int:
        """Numbers claimed without a final answer: settled through the history first."""
        return len(self) - self.settled

    @property
    def first_claimed_at(self) -> float | None:
        """The earliest claim (epoch seconds), None without claims."""
        return float(self.claimed_at.min()) if len(self) else None

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.claimed_at, self.status, self.message_id, self.failure)
        return sum(array.nbytes for array in arrays)

    def add_outcomes(self, rows: Iterable[tuple]) -> None:
        """Apply outcome rows (``text_hash``, payload) in the order read: a higher precedence
        wins, and among equals the later row."""
        found = _Outcomes(self)
        for tx, raw in rows:
            found.add(int(tx, 16), decode_outcome(raw))
        if not found.sizes:
            return
        texts = np.repeat(np.array(found.texts, dtype=np.uint64), found.sizes)
        where, mine = self._find(pack(as_ints(found.numbers), texts))  # no claim: ignored
        status = np.repeat(np.array(found.statuses, dtype=np.int8), found.sizes)[mine]
        ids, failures = np.concatenate(found.ids)[mine], np.concatenate(found.failures)[mine]
        where = where[mine]
        order = np.lexsort((np.arange(len(where)), status, where))
        last = np.ones(len(order), dtype=bool)  # per entry: the best status, the last read
        last[:-1] = where[order][1:] != where[order][:-1]
        best = order[last]
        best = best[status[best] >= self.status[where[best]]]  # not below earlier blocks'
        entries, status = where[best], status[best]
        accepted, failed = status == _ACCEPTED, status == _FAILED
        self.status[entries] = status
        self.message_id[entries[accepted]] = ids[best][accepted]
        self.failure[entries[failed]] = failures[best][failed]
        self._failure_columns = None

    def failure_id(self, code: int | None, description: str | None) -> int:
        return self._failures.setdefault((code, description), len(self._failures))

    def of(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What earlier tries knew of ``rows`` (``phone``, ``text``): one row per number and
        text they claimed, with :data:`COLUMNS`, indexed by ``number + text_hash``."""
        if not len(self) or rows.empty:
            return _frame({}, pd.Index([], dtype=object, name="key"))
        texts = pd.Categorical(rows["text"])
        hashes = np.array([text_hash(text) for text in texts.categories], dtype=object)
        hash_ints = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
        where, seen = self._find(pack(as_ints(rows["phone"]), hash_ints[texts.codes]))
        at = where[seen]
        numbers = rows["phone"].to_numpy(dtype=object)[seen]
        tx = hashes[texts.codes[seen]]
        status = self.status[at]
        codes, whys = self._failure_values()
        failed = np.where(status == _FAILED, self.failure[at], -1)
        index = pd.Index(numbers + tx, dtype=object, name="key")
        found = {
            "destination_number": numbers,
            "text_hash": tx,
            "status": STATUSES[status],
            "message_id": pd.arrays.IntegerArray(self.message_id[at], status != _ACCEPTED),
            "error_code": codes[failed],
            "error_description": whys[failed],
            "claimed_at": self.claimed_at[at],
        }
        frame = _frame(found, index)
        return frame[~frame.index.duplicated()] if not frame.index.is_unique else frame

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where ``keys`` are in the index (a binary search each), and which are there."""
        where = np.searchsorted(self.keys, keys)
        inside = where < len(self.keys)
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = self.keys[where[inside]] == keys[inside]
        return where, found

    def _failure_values(self) -> tuple[pd.arrays.IntegerArray, np.ndarray]:
        """The failures' codes and descriptions by index, with a missing one at index -1."""
        if self._failure_columns is None:
            pairs = [*self._failures, (None, None)]
            codes = [0 if code is None else code for code, _ in pairs]
            missing = [code is None for code, _ in pairs]
            self._failure_columns = (
                pd.arrays.IntegerArray(np.array(codes, dtype=np.int64), np.array(missing)),
                np.array([why for _, why in pairs], dtype=object),
            )
        return self._failure_columns


class _Outcomes:
    """A block of outcome rows as flat entries: numbers, and per row segment its text, status
    and size; message ids and failure indexes per entry."""

    def __init__(self, index: EarlierTries) -> None:
        self.index = index
        self.numbers: list[str] = []
        self.texts: list[int] = []
        self.statuses: list[int] = []
        self.sizes: list[int] = []
        self.ids: list[np.ndarray] = []
        self.failures: list[np.ndarray] = []

    def add(self, text: int, payload: dict[str, list[list]]) -> None:
        for status, columns in payload.items():
            size = len(columns[0])
            self.numbers += columns[0]
            self.texts.append(text)
            self.statuses.append(_CODES[status])
            self.sizes.append(size)
            ids = np.zeros(size, dtype=np.int64)
            failures = np.full(size, -1, dtype=np.int32)
            if status == ACCEPTED:
                ids = np.asarray(columns[1], dtype=np.int64)
            elif status == FAILED:
                whys = columns[2] if len(columns) > 2 else [None] * size
                ids_of = self.index.failure_id
                failures = np.array(
                    [ids_of(code, why) for code, why in zip(columns[1], whys, strict=True)],
                    dtype=np.int32,
                )
            self.ids.append(ids)
            self.failures.append(failures)


def pack(numbers: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """(number, text hash) pairs as 16-byte keys, big-endian so that bytes sort as numbers."""
    keys = np.empty((len(numbers), 2), dtype=">u8")
    keys[:, 0], keys[:, 1] = numbers, texts
    return keys.view("S16").ravel()


def as_ints(numbers) -> np.ndarray:
    """Normalised numbers (digit strings) as int64."""
    if isinstance(numbers, pd.Series):
        numbers = numbers.to_numpy(dtype=object)
    return np.array(numbers, dtype=np.int64) if len(numbers) else np.zeros(0, np.int64)


def _frame(columns: dict, index: pd.Index) -> pd.DataFrame:
    """The columns as ``resume`` reads them: texts as Python objects (None, not NaN, where
    missing), ids and codes as nullable integers."""
    if not columns:
        return pd.DataFrame(columns=list(COLUMNS), index=index)
    texts = ("destination_number", "text_hash", "status", "error_description")
    return pd.DataFrame(
        {
            name: pd.Series(columns[name], index=index, dtype=object if name in texts else None)
            for name in COLUMNS
        },
        index=index,
    )


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _epoch_seconds(values: list) -> np.ndarray:
    """Timestamps as the database returns them (strings or naive UTC datetimes) -> epoch s."""
    times = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    return ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
