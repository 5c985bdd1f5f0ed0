"""The send ledger: a table remembering what each task instance sent, so a retry never re-sends.

Two tables. ``<table>`` holds one claim row per (task instance, number, text), committed
before the batch's request goes out; ``<table>_outcomes`` holds one row per answered batch
(accepted numbers with their message ids, failed ones with code and reason, unknown ones) as
compact JSON, because one row per batch costs a fraction of a hundred row updates. Claims of a
batch that provably never reached the API are deleted, so a retry sends them. A retry of the
same task instance (same dag_id, run_id, task_id, map_index) therefore skips everything it
finds and never sends a claimed number again; a claim without an outcome is ``in_flight``. A
new DAG run is a new campaign. A unique key makes a second, concurrent try of the same task
instance lose the race for a batch instead of sending it twice.

Writes go through one background thread with its own connection. Each claim is committed on
its own, as soon as it arrives (its sender waits for it); outcomes queue up and share a commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from airflow_provider_voxsms.errors import VoximplantError
from airflow_provider_voxsms.sms.dispatch import BatchOutcome
from airflow_provider_voxsms.sms.plan import Batch
from airflow_provider_voxsms.sql import (
    check_table_name,
    db_api_hook,
    ensure_schema,
    is_unique_violation,
    transactional,
)

log = logging.getLogger(__name__)

IN_FLIGHT, ACCEPTED, FAILED, UNKNOWN = "in_flight", "accepted", "failed", "unknown"
MAX_JOBS_PER_COMMIT = 256

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {table} (
    ti_key CHAR(32) NOT NULL,
    destination_number VARCHAR(20) NOT NULL,
    text_hash CHAR(16) NOT NULL,
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    claimed_at TIMESTAMP NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_{table}_key "
    "ON {table} (ti_key, destination_number, text_hash)",
    """CREATE TABLE IF NOT EXISTS {table}_outcomes (
    ti_key CHAR(32) NOT NULL,
    text_hash CHAR(16) NOT NULL,
    outcome TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS ix_{table}_outcomes_key ON {table}_outcomes (ti_key)",
)
COLUMNS = ("destination_number", "text_hash", "status", "message_id", "error_code")
# When a number has outcomes from several rows (a batch said unknown, a later reconciliation
# found it), the most definite wins.
_PRECEDENCE = {ACCEPTED: 3, FAILED: 2, UNKNOWN: 1}


class LedgerError(VoximplantError):
    """The send ledger could not be read or written."""


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
    def digest(self) -> str:
        raw = "\x1f".join((self.dag_id, self.run_id, self.task_id, str(self.map_index)))
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


class SendLedger:
    """The ledger of one task instance on an Airflow SQL connection (SQLite, PostgreSQL, ...).

    :param conn_id: a connection whose hook is a common-sql ``DbApiHook``.
    :param key: the task instance the rows belong to.
    :param table: the ledger table, created if absent.
    """

    def __init__(self, conn_id: str, key: TaskInstanceKey, table: str = "voxsms_send_ledger"):
        check_table_name(f"{table}_outcomes")
        self.conn_id, self.key, self.table = conn_id, key, table
        self._jobs: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self.write_errors: list[str] = []
        self._claimed: set[tuple[str, tuple[str, ...]]] = set()  # batches this try claimed

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> pd.DataFrame:
        """Create the table if absent and return this task instance's rows from earlier tries.

        Raises :class:`LedgerError` (before anything is sent) when the database is unreachable.
        """
        try:
            self._hook = db_api_hook(self.conn_id)
            with transactional(self._hook) as conn:
                ensure_schema(conn, [s.format(table=self.table) for s in _SCHEMA])
                with closing(conn.cursor()) as cur:
                    where = f"WHERE ti_key = {self._hook.placeholder}"
                    cur.execute(
                        f"SELECT destination_number, text_hash, claimed_at FROM {self.table} {where}",
                        (self.key.digest,),
                    )
                    claims = cur.fetchall()
                    cur.execute(
                        f"SELECT text_hash, outcome FROM {self.table}_outcomes {where}",
                        (self.key.digest,),
                    )
                    outcomes = cur.fetchall()
                conn.commit()
        except Exception as err:
            raise LedgerError(
                f"The send ledger on connection {self.conn_id!r} is unavailable "
                f"({type(err).__name__}: {err}). Nothing was sent; fix the connection or run "
                "without ledger_conn_id."
            ) from None
        self._writer = threading.Thread(target=self._write_loop, name="voxsms-ledger", daemon=True)
        self._writer.start()
        return _previous(claims, outcomes)

    # -- writing ------------------------------------------------------------------------------

    def claim(self, batch: Batch) -> bool:
        """Record a batch as in flight, committed, before it is sent.

        Returns False when another try of this task instance holds some of its numbers.
        """
        now, digest, tx, k = _now(), self.key.digest, text_hash(batch.text), self.key
        rows = [
            (digest, n, tx, k.dag_id, k.run_id, k.task_id, k.map_index, now) for n in batch.numbers
        ]
        sql = (
            f"INSERT INTO {self.table} (ti_key, destination_number, text_hash, dag_id, run_id, "
            f"task_id, map_index, claimed_at) VALUES ({self._marks(8)})"
        )
        claimed = self._submit(lambda cur: cur.executemany(sql, rows), wait=True)
        if claimed:
            self._claimed.add((batch.text, batch.numbers))
        return claimed

    def record(self, outcome: BatchOutcome) -> None:
        """Record a batch's outcome (queued; committed with the next group)."""
        tx, digest = text_hash(outcome.batch.text), self.key.digest
        if not outcome.sent:  # never reached the API: forget the claims, a retry sends them
            if (outcome.batch.text, outcome.batch.numbers) not in self._claimed:
                return  # claimed by nobody, or by another try: not ours to delete
            where = f"ti_key = {self._hook.placeholder} AND destination_number = "
            where += f"{self._hook.placeholder} AND text_hash = {self._hook.placeholder}"
            sql = f"DELETE FROM {self.table} WHERE {where}"
            rows = [(digest, n, tx) for n in outcome.batch.numbers]
            self._submit(lambda cur: cur.executemany(sql, rows), wait=False)
            return
        payload = {ACCEPTED: outcome.accepted, FAILED: outcome.failed, UNKNOWN: outcome.unknown}
        self._submit(self._insert_outcome(tx, payload), wait=False)

    def resolve(self, found: dict[tuple[str, str], int], still_unknown: list[tuple[str, str]]):
        """After reconciliation: in-flight rows found in the API's history are ``accepted``
        (with their message id); the rest are ``unknown``. Keys are (number, text_hash).
        """
        by_text: dict[str, dict[str, list]] = {}
        for (number, tx), message_id in found.items():
            by_text.setdefault(tx, {ACCEPTED: [], UNKNOWN: []})[ACCEPTED].append(
                (number, message_id)
            )
        for number, tx in still_unknown:
            why = "sent by an earlier try that stopped; not in history"
            by_text.setdefault(tx, {ACCEPTED: [], UNKNOWN: []})[UNKNOWN].append((number, why))
        for tx, payload in by_text.items():
            self._submit(self._insert_outcome(tx, payload), wait=True)

    def _insert_outcome(self, tx: str, payload: dict) -> Callable[[Any], None]:
        sql = (
            f"INSERT INTO {self.table}_outcomes (ti_key, text_hash, outcome, recorded_at) "
            f"VALUES ({self._marks(4)})"
        )
        row = (self.key.digest, tx, json.dumps(payload, separators=(",", ":")), _now())
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

    def _submit(self, apply: Callable[[Any], None] | None, *, wait: bool) -> Any:
        if self._writer is None:
            raise LedgerError("the send ledger is not open")
        future: Future = Future()
        self._jobs.put((apply, future, wait))
        if not wait:
            return future
        try:
            future.result()
            return True
        except Exception as err:
            if is_unique_violation(err):
                return False
            raise LedgerError(
                f"Writing the send ledger failed: {type(err).__name__}: {err}"
            ) from None

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
            except Exception:  # the connection itself is gone: fail these jobs, then stop
                for _, future, _ in jobs:
                    future.set_exception(err)
                raise err from None
            if len(jobs) == 1:
                if not is_unique_violation(err):
                    self.write_errors.append(f"{type(err).__name__}: {err}")
                    log.error("Send ledger write failed: %s: %s", type(err).__name__, err)
                jobs[0][1].set_exception(err)
                return
            for job in jobs:
                self._commit(conn, [job])


def _commit_groups(jobs: list) -> list[list]:
    """Each claim in a transaction of its own, outcomes together.

    A sender waits for its claim's commit. Committing the claims of senders that arrive
    together as one group would release them together, keep them in step and make each wait
    for all; one by one, the first goes at once and the senders drift apart.
    """
    groups: list[list] = []
    outcomes: list = []
    for job in jobs:
        if job[2]:  # someone waits for it: a claim
            groups.append([job])
        else:
            outcomes.append(job)
    return [*groups, outcomes] if outcomes else groups


def _previous(claims: list, outcomes: list) -> pd.DataFrame:
    """Earlier tries' numbers: each claim with its best-known outcome, or ``in_flight``."""
    best: dict[tuple[str, str], tuple] = {}
    for tx, raw in outcomes:
        for status, entries in json.loads(raw).items():
            for number, *details in entries:
                key = (number, tx)
                if key not in best or _PRECEDENCE[status] > _PRECEDENCE[best[key][0]]:
                    best[key] = (status, *details)
    rows = []
    for number, tx, claimed_at in claims:
        status, *details = best.get((number, tx), (IN_FLIGHT,))
        message_id = details[0] if status == ACCEPTED else None
        error_code = details[0] if status == FAILED else None
        rows.append((number, tx, status, message_id, error_code, claimed_at))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "claimed_at"])
    frame["claimed_at"] = pd.to_datetime(frame["claimed_at"], utc=True)
    return frame
