"""The send ledger: tables remembering what each task instance sent, so a retry never re-sends.

Three tables. ``<table>_leases`` has one row per task instance (dag_id, run_id, task_id,
map_index) naming the try that holds it: each try takes the lease over when it opens the
ledger, so the last to open (a retry starts after the try before it) holds it.
``<table>_claims`` holds one claim row per batch (its numbers as JSON), committed before the
batch's request goes out, in a transaction that first locks the lease row and finds it still
ours; a try that lost its lease claims nothing more, and the try that took it over read every
claim committed before the takeover. ``<table>_outcomes`` holds one row per answered batch
(accepted numbers with message ids, failed ones with code and reason, unknown ones) as compact
JSON. The claim of a batch that provably never reached the API is deleted, so a retry sends
it. A retry therefore skips every settled number; a claimed number without a final outcome
(``in_flight`` or ``unknown``) is settled through the history before it is sent again. A new
DAG run is a new campaign. Use it as a context manager: entering opens it (``previous`` then
holds what earlier tries knew), leaving commits everything queued.

Writes go through one background thread with its own connection. Claims that arrive together
share a commit, which their senders wait for; outcomes queue up and share another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_voxsms.errors import LedgerError
from airflow_provider_voxsms.sms.model import (
    ACCEPTED,
    FAILED,
    IN_FLIGHT,
    UNKNOWN,
    Batch,
    BatchOutcome,
    bulk_objects,
    text_hash,
)
from airflow_provider_voxsms.storage.sql import (
    check_table_name,
    db_api_hook,
    ensure_schema,
    is_unique_violation,
    transactional,
)

log = logging.getLogger(__name__)

MAX_JOBS_PER_COMMIT = 256

# The leases table comes last: when it exists, so does everything before it.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {table}_claims (
    claim_id CHAR(32) NOT NULL PRIMARY KEY,
    ti_key CHAR(32) NOT NULL,
    text_hash CHAR(16) NOT NULL,
    numbers TEXT NOT NULL,
    claimed_at TIMESTAMP NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS ix_{table}_claims_key ON {table}_claims (ti_key)",
    """CREATE TABLE IF NOT EXISTS {table}_outcomes (
    ti_key CHAR(32) NOT NULL,
    text_hash CHAR(16) NOT NULL,
    outcome TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS ix_{table}_outcomes_key ON {table}_outcomes (ti_key)",
    """CREATE TABLE IF NOT EXISTS {table}_leases (
    ti_key CHAR(32) NOT NULL PRIMARY KEY,
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    holder CHAR(32) NOT NULL,
    taken_at TIMESTAMP NOT NULL,
    last_claim_at TIMESTAMP
)""",
)
# What ``previous`` holds: one row per number and text an earlier try claimed.
COLUMNS = (
    "destination_number",
    "text_hash",
    "status",
    "message_id",
    "error_code",
    "error_description",
    "claimed_at",
)
# When a number has outcomes from several rows (a batch said unknown, a later settle round
# found it or sent it again), the most definite wins.
_PRECEDENCE = {ACCEPTED: 3, FAILED: 2, UNKNOWN: 1, IN_FLIGHT: 0}


class _LeaseLost(Exception):
    """A newer try of this task instance took the lease over; this try may claim nothing more."""


@dataclass(frozen=True)
class TaskInstanceKey:
    """Which task instance a ledger row belongs to."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Any) -> TaskInstanceKey:
        ti = context["ti"]
        return cls(ti.dag_id, ti.run_id, ti.task_id, int(getattr(ti, "map_index", -1)))

    @property
    def columns(self) -> tuple[str, str, str, int]:
        """The key as the values of ``sql.TASK_KEY_COLUMNS``."""
        return (self.dag_id, self.run_id, self.task_id, self.map_index)

    @property
    def digest(self) -> str:
        raw = "\x1f".join((self.dag_id, self.run_id, self.task_id, str(self.map_index)))
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


class SendLedger:
    """The ledger of one task instance on an Airflow SQL connection (SQLite, PostgreSQL, ...).

    :param conn_id: a connection whose hook is a common-sql ``DbApiHook``.
    :param key: the task instance the rows belong to.
    :param table: prefix of the ledger's tables (``_leases``, ``_claims``, ``_outcomes``),
        created if absent.
    """

    def __init__(self, conn_id: str, key: TaskInstanceKey, table: str = "voxsms_send_ledger"):
        check_table_name(f"{table}_outcomes")
        self.conn_id, self.key, self.table = conn_id, key, table
        self.holder = uuid.uuid4().hex  # this try, in the lease table
        self._jobs: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self.write_errors: list[str] = []
        self._claims: dict[tuple[str, tuple[str, ...]], str] = {}  # this try's batch -> claim_id
        self._lease_lost = False
        self.previous = pd.DataFrame(columns=list(COLUMNS))

    def __enter__(self) -> SendLedger:
        self.previous = self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            with suppress(LedgerError):  # the error in flight matters more
                self.close()

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> pd.DataFrame:
        """Create the tables if absent, take this task instance's lease over and return what
        earlier tries claimed and learnt.

        Raises :class:`LedgerError` (before anything is sent) when the database is unreachable.
        """
        try:
            self._hook = db_api_hook(self.conn_id)
            with transactional(self._hook) as conn:
                ensure_schema(
                    conn,
                    [s.format(table=self.table) for s in _SCHEMA],
                    probe=f"SELECT ti_key FROM {self.table}_leases WHERE 1 = 0",
                )
                for attempt in (1, 2):
                    try:
                        claims, outcomes = self._take_lease(conn)
                        break
                    except Exception as err:  # another try's first open inserted the lease
                        with suppress(Exception):  # a dead connection must not hide err
                            conn.rollback()
                        if attempt == 2 or not is_unique_violation(err):
                            raise
        except Exception as err:
            raise LedgerError(
                f"The send ledger on connection {self.conn_id!r} is unavailable "
                f"({type(err).__name__}: {err}). Nothing was sent; fix the connection or run "
                "without ledger_conn_id."
            ) from None
        self._writer = threading.Thread(target=self._write_loop, name="voxsms-ledger", daemon=True)
        self._writer.start()
        with bulk_objects():
            return _previous(claims, outcomes)

    def _take_lease(self, conn: Any) -> tuple[list, list]:
        """In one transaction: make this try the lease holder, then read the earlier rows.

        Taking the lease waits for a claim in progress (it locks the same row), so the read
        that follows sees every claim the previous holder will ever commit.
        """
        k, mark = self.key, self._hook.placeholder
        with closing(conn.cursor()) as cur:
            cur.execute(
                f"UPDATE {self.table}_leases SET holder = {mark}, taken_at = {mark} "
                f"WHERE ti_key = {mark}",
                (self.holder, _now(), k.digest),
            )
            if cur.rowcount == 0:
                cur.execute(
                    f"INSERT INTO {self.table}_leases (ti_key, dag_id, run_id, task_id, "
                    f"map_index, holder, taken_at) VALUES ({self._marks(7)})",
                    (k.digest, k.dag_id, k.run_id, k.task_id, k.map_index, self.holder, _now()),
                )
            where = f"WHERE ti_key = {mark}"
            cur.execute(
                f"SELECT text_hash, numbers, claimed_at FROM {self.table}_claims {where} "
                "ORDER BY claimed_at",
                (k.digest,),
            )
            claims = cur.fetchall()
            cur.execute(
                f"SELECT text_hash, outcome FROM {self.table}_outcomes {where}", (k.digest,)
            )
            outcomes = cur.fetchall()
        conn.commit()
        return claims, outcomes

    def earlier(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What earlier tries knew of these rows (``phone``, ``text``), as ``resume`` reads it."""
        return self.previous

    # -- writing ------------------------------------------------------------------------------

    def claim(self, batch: Batch) -> bool:
        """Record a batch as in flight, committed, before it is sent.

        Returns False when a newer try of this task instance has taken the lease over: that
        try owns the numbers this one has not claimed yet.
        """
        if self._lease_lost:
            return False
        mark, claim_id, now = self._hook.placeholder, uuid.uuid4().hex, _now()
        lock = (
            f"UPDATE {self.table}_leases SET last_claim_at = {mark} "
            f"WHERE ti_key = {mark} AND holder = {mark}"
        )
        insert = (
            f"INSERT INTO {self.table}_claims (claim_id, ti_key, text_hash, numbers, claimed_at) "
            f"VALUES ({self._marks(5)})"
        )
        row = (claim_id, self.key.digest, text_hash(batch.text), _json(batch.numbers), now)

        def apply(cur: Any) -> None:
            cur.execute(lock, (now, self.key.digest, self.holder))
            if cur.rowcount != 1:
                raise _LeaseLost
            cur.execute(insert, row)

        try:
            self._submit(apply, wait=True)
        except _LeaseLost:
            self._lease_lost = True
            log.warning(
                "A newer try of this task instance took the send ledger over; this try claims "
                "nothing more and reports its unclaimed numbers as unknown."
            )
            return False
        self._claims[(batch.text, batch.numbers)] = claim_id
        return True

    def record(self, outcome: BatchOutcome) -> None:
        """Record a batch's outcome (queued; committed with the next group)."""
        # A batch's outcome is recorded once: its claim id is not needed after (keeping them
        # all held every number of the campaign in memory, ~70 bytes a number).
        claim_id = self._claims.pop((outcome.batch.text, outcome.batch.numbers), None)
        if not outcome.sent:  # never reached the API: forget the claim, a retry sends it
            if claim_id is None:
                return  # claimed by nobody, or by another try: not ours to delete
            sql = f"DELETE FROM {self.table}_claims WHERE claim_id = {self._hook.placeholder}"
            self._submit(lambda cur: cur.execute(sql, (claim_id,)), wait=False)
            return
        payload: dict[str, Any] = {"v": 2}  # columns, not rows: a retry parses it faster
        for status, entries in (
            (ACCEPTED, outcome.accepted),
            (FAILED, outcome.failed),
            (UNKNOWN, outcome.unknown),
        ):
            if entries:
                payload[status] = [list(column) for column in zip(*entries, strict=True)]
        self._submit(self._insert_outcome(text_hash(outcome.batch.text), payload), wait=False)

    def _insert_outcome(self, tx: str, payload: dict) -> Callable[[Any], None]:
        sql = (
            f"INSERT INTO {self.table}_outcomes (ti_key, text_hash, outcome, recorded_at) "
            f"VALUES ({self._marks(4)})"
        )
        row = (self.key.digest, tx, _json(payload), _now())
        return lambda cur: cur.execute(sql, row)

    def close(self) -> None:
        """Commit everything queued and stop the writer; raises if any write failed."""
        if self._writer is None:
            return
        done = self._submit(None, wait=False)
        self._writer.join()
        self._writer = None
        done.result()
        if self.write_errors:
            raise LedgerError(
                f"{len(self.write_errors)} send ledger write(s) failed, first: "
                f"{self.write_errors[0]}. Those numbers stay 'in_flight'; a retry reconciles them."
            )

    # -- the writer thread --------------------------------------------------------------------

    def _marks(self, count: int) -> str:
        return ", ".join([self._hook.placeholder] * count)

    def _submit(self, apply: Callable[[Any], None] | None, *, wait: bool) -> Future:
        """Queue a write for the writer thread; with ``wait``, until it is committed."""
        if self._writer is None:
            raise LedgerError("the send ledger is not open")
        future: Future = Future()
        self._jobs.put((apply, future, wait))
        if wait:
            try:
                future.result()
            except _LeaseLost:
                raise
            except Exception as err:
                raise LedgerError(
                    f"Writing the send ledger failed: {type(err).__name__}: {err}"
                ) from None
        return future

    def _write_loop(self) -> None:
        jobs: list = []
        try:
            with transactional(db_api_hook(self.conn_id)) as conn:
                stopping = False
                while not stopping:
                    jobs = [self._jobs.get()]
                    while len(jobs) < MAX_JOBS_PER_COMMIT and not self._jobs.empty():
                        jobs.append(self._jobs.get_nowait())
                    stopping = any(job[0] is None for job in jobs)
                    for group in _commit_groups([job for job in jobs if job[0] is not None]):
                        self._commit(conn, group)
                    for apply, future, _ in jobs:
                        if apply is None:
                            future.set_result(None)
        except Exception as err:  # the connection is gone: fail every job until close()
            self.write_errors.append(f"{type(err).__name__}: {err}")
            for apply, future, _ in jobs:
                if apply is None:
                    future.set_result(None)
                    return
                if not future.done():
                    future.set_exception(err)
            while True:
                apply, future, _ = self._jobs.get()
                if apply is None:
                    future.set_result(None)
                    return
                future.set_exception(err)

    def _commit(self, conn: Any, jobs: list) -> None:
        """Apply the jobs in one transaction; if it fails, one by one so only culprits fail."""
        if not jobs:
            return
        try:
            with closing(conn.cursor()) as cur:
                for apply, _, _ in jobs:
                    apply(cur)
            conn.commit()
            for _, future, _ in jobs:
                future.set_result(None)
        except Exception as err:
            try:
                conn.rollback()
            except Exception as gone:  # the connection itself is gone: fail these jobs, stop
                if isinstance(err, _LeaseLost):
                    err = gone  # the dead connection, not the lease, is what stops the writer
                for _, future, _ in jobs:
                    future.set_exception(err)
                raise err from None
            if len(jobs) == 1:
                if not isinstance(err, _LeaseLost):
                    self.write_errors.append(f"{type(err).__name__}: {err}")
                    log.error("Send ledger write failed: %s: %s", type(err).__name__, err)
                jobs[0][1].set_exception(err)
                return
            for job in jobs:
                self._commit(conn, [job])


def _commit_groups(jobs: list) -> list[list]:
    """The writes someone waits for (claims, reconciliation results) in one transaction, then
    the queued outcomes in another.

    A sender waits for its claim's commit, and a commit (a flush to disk) costs about as much
    as the one-row inserts of all the claims that queued during the previous one: grouped,
    sixteen senders arriving at once wait for one commit instead of up to sixteen.
    """
    waited_for = [job for job in jobs if job[2]]
    queued = [job for job in jobs if not job[2]]
    return [group for group in (waited_for, queued) if group]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _previous(claims: list, outcomes: list) -> pd.DataFrame:
    """Earlier tries' numbers, indexed by ``number + text_hash``: one row per claimed number and
    text with its most definite outcome (``in_flight`` when none was recorded) and its first
    claim's time (epoch seconds). ``claims`` come in claim order.

    Linear in the numbers: each row's JSON is parsed once, the rest is vectorised.
    """
    numbers, hashes, claimed_at = [], [], []
    claim_times = _epoch_seconds([at for _, _, at in claims]).tolist()
    for (tx, raw, _), at in zip(claims, claim_times, strict=True):
        batch = json.loads(raw)
        numbers += batch
        hashes += [tx] * len(batch)
        claimed_at += [at] * len(batch)
    one_text = len({tx for tx, _, _ in claims}) <= 1
    keys = row_keys(numbers, None if one_text else hashes)
    found = pd.DataFrame(
        {
            "destination_number": pd.Series(numbers, dtype=object),
            "text_hash": pd.Series(hashes, dtype=object),
            "status": IN_FLIGHT,
            "message_id": _missing_ints(len(keys)),
            "error_code": _missing_ints(len(keys)),
            "error_description": pd.Series([None] * len(keys), dtype=object),
            "claimed_at": pd.Series(claimed_at, dtype="float64"),
        }
    ).set_index(keys)
    if not found.index.is_unique:  # claimed again in a settle round: keep the first claim
        found = found[~found.index.duplicated(keep="first")]
    parsed = [(tx, _columns(json.loads(raw))) for tx, raw in outcomes]
    # Outcomes in rising precedence, so that the most definite one is written last.
    for status in sorted(_PRECEDENCE, key=_PRECEDENCE.get)[1:]:
        fields: list[list] = [[], [], []]
        hashes = []
        for tx, payload in parsed:
            if columns := payload.get(status):
                for field_values, values in zip(fields, columns, strict=False):
                    field_values += values
                hashes += [tx] * len(columns[0])
        if not hashes:
            continue
        where = found.index.get_indexer(row_keys(fields[0], None if one_text else hashes))
        mine = where >= 0  # an outcome without a claim (none should exist) is ignored
        rows = where[mine]
        found.iloc[rows, found.columns.get_loc("status")] = status
        if status == ACCEPTED:
            ids = _ints(fields[1])[mine]
            found.iloc[rows, found.columns.get_loc("message_id")] = ids
        if status == FAILED:
            codes = pd.array(fields[1], dtype="Int64")[mine]  # may hold None
            found.iloc[rows, found.columns.get_loc("error_code")] = codes
            whys = pd.Series(fields[2], dtype=object)[mine].array
            found.iloc[rows, found.columns.get_loc("error_description")] = whys
    return found[list(COLUMNS)]


def _missing_ints(count: int) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.zeros(count, np.int64), np.ones(count, bool))


def _ints(values: list) -> pd.arrays.IntegerArray:
    """Integers without gaps (message ids), without pandas' per-value checks."""
    array = np.asarray(values, dtype=np.int64)
    return pd.arrays.IntegerArray(array, np.zeros(len(array), bool))


def row_keys(numbers: list, hashes: list | None) -> pd.Index:
    """The index of ``previous``: one string per (number, text hash), the hash appended (it
    has a fixed length, so no separator is needed), or, when every claim has the same text
    (``hashes`` None), the number alone, which saves building a million keys."""
    if hashes is None:
        return pd.Index(numbers, dtype=object, name="destination_number")
    keys = [n + tx for n, tx in zip(numbers, hashes, strict=True)]
    return pd.Index(keys, dtype=object, name="key")


def _columns(payload: dict) -> dict[str, list]:
    """An outcome row's entries as columns (version 2), also for rows written as rows."""
    if payload.pop("v", None) == 2:
        return payload
    return {
        status: [list(c) for c in zip(*rows, strict=True)]
        for status, rows in payload.items()
        if rows
    }


def _epoch_seconds(values: list) -> pd.Series:
    """Timestamps as the database returns them (strings or naive UTC datetimes) -> epoch s."""
    times = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
    return (times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
