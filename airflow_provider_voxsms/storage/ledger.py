"""The send ledger: tables remembering what each task instance sent, so a retry never re-sends.

Three tables. ``<table>_leases`` has one row per task instance (dag_id, run_id, task_id,
map_index) naming the try that holds it: each try takes the lease over when it opens the
ledger, so the last to open (a retry starts after the try before it) holds it.
``<table>_claims`` holds one claim row per batch (its numbers as JSON), committed before the
batch's request goes out, in a transaction that first locks the lease row and finds it still
ours; a try that lost its lease claims nothing more, and the try that took it over read every
claim committed before the takeover. ``<table>_outcomes`` holds one row per answered batch
(``storage.codec``). The claim of a batch that provably never reached the API is deleted, so a
retry sends it. A retry therefore skips every settled number; a claimed number without a final
outcome (``in_flight`` or ``unknown``) is settled through the history before it is sent again.
A new DAG run is a new campaign. Use it as a context manager: entering takes the lease and
reads what earlier tries knew, a block of rows at a time, into a compact index
(``storage.earlier``; :meth:`SendLedger.earlier` answers per chunk), leaving commits everything
queued.

Writes go through one background thread with its own connection. Claims that arrive together
share a commit, which their senders wait for; outcomes queue up and share another.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from airflow_provider_voxsms.errors import LedgerError
from airflow_provider_voxsms.sms.model import Batch, BatchOutcome, bulk_objects, text_hash
from airflow_provider_voxsms.storage import codec
from airflow_provider_voxsms.storage.earlier import ClaimsReader, EarlierTries
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
READ_ROWS = 1_000  # claim or outcome rows fetched at a time when a ledger opens


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
        self._earlier = EarlierTries.empty()

    def __enter__(self) -> SendLedger:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            with suppress(LedgerError):  # the error in flight matters more
                self.close()

    # -- what earlier tries knew --------------------------------------------------------------

    def earlier(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What earlier tries knew of ``rows`` (``phone``, ``text``): the shape
        :func:`~airflow_provider_voxsms.sms.resume.resume` takes as ``previous``."""
        return self._earlier.of(rows)

    @property
    def has_earlier(self) -> bool:
        """Whether earlier tries claimed anything (a first try: False)."""
        return len(self._earlier) > 0

    @property
    def claimed_earlier(self) -> int:
        """Numbers (with their texts) earlier tries claimed. (No ``__len__``: a ledger with
        nothing earlier must not be falsy.)"""
        return len(self._earlier)

    @property
    def settled_earlier(self) -> int:
        """Numbers earlier tries saw accepted or failed."""
        return self._earlier.settled

    @property
    def open_earlier(self) -> int:
        """Numbers earlier tries claimed without a final answer."""
        return self._earlier.open

    # -- opening ------------------------------------------------------------------------------

    def open(self) -> SendLedger:
        """Create the tables if absent, take this task instance's lease over and read what
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
                        self._take_lease(conn)
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
        return self

    def _take_lease(self, conn: Any) -> None:
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
        with bulk_objects():
            self._earlier = self._read_earlier(conn)
        conn.commit()

    def _read_earlier(self, conn: Any) -> EarlierTries:
        """The claims, then the outcomes, of this task instance, a block of rows at a time."""
        where, key = f"WHERE ti_key = {self._hook.placeholder}", (self.key.digest,)
        claims = ClaimsReader()
        for rows in _blocks(
            conn,
            f"SELECT text_hash, numbers, claimed_at FROM {self.table}_claims {where} "
            "ORDER BY claimed_at",
            key,
        ):
            claims.add(rows)
        earlier = claims.finish()
        sql = f"SELECT text_hash, outcome FROM {self.table}_outcomes {where}"
        for rows in _blocks(conn, sql, key):
            earlier.add_outcomes(rows)
        return earlier

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
        row = (claim_id, self.key.digest, text_hash(batch.text), codec.encode(batch.numbers), now)

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
        sql = (
            f"INSERT INTO {self.table}_outcomes (ti_key, text_hash, outcome, recorded_at) "
            f"VALUES ({self._marks(4)})"
        )
        tx = text_hash(outcome.batch.text)
        row = (self.key.digest, tx, codec.encode_outcome(outcome), _now())
        self._submit(lambda cur: cur.execute(sql, row), wait=False)

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


def _blocks(conn: Any, sql: str, params: tuple) -> Iterator[list[tuple]]:
    """The rows of a query, ``READ_ROWS`` at a time: through a server-side cursor where the
    driver has one (PostgreSQL's), so neither the client nor the driver holds them all."""
    try:
        cursor = conn.cursor(name=f"voxsms_ledger_{uuid.uuid4().hex[:8]}")
    except TypeError:  # sqlite3 and most drivers: an ordinary cursor steps through the rows
        cursor = conn.cursor()
    with closing(cursor):
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(READ_ROWS):
            yield rows
