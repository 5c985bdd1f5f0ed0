"""The send ledger: a table remembering what each task instance sent, so a retry never re-sends.

One row per (task instance, number, text). A batch's rows are committed as ``in_flight`` before
its request goes out and updated to ``accepted``, ``failed`` or ``unknown`` after the answer;
rows of a batch that provably never reached the API are deleted, so a retry sends them. A
retry of the same task instance (same dag_id, run_id, task_id, map_index) therefore skips
everything it finds and never sends an ``in_flight`` row again. A new DAG run is a new
campaign. A unique key makes a second, concurrent try of the same task instance lose the race
for a batch instead of sending it twice.

Writes go through one background thread with its own connection and are group-committed:
while a transaction commits, the next claims and outcomes queue up and share the next commit.
"""

from __future__ import annotations

import hashlib
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
    status VARCHAR(16) NOT NULL,
    message_id BIGINT,
    error_code BIGINT,
    error_description TEXT,
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    sent_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ux_{table}_key "
    "ON {table} (ti_key, destination_number, text_hash)",
)
COLUMNS = ("destination_number", "text_hash", "status", "message_id", "error_code")


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
        check_table_name(table)
        self.conn_id, self.key, self.table = conn_id, key, table
        self._jobs: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self.commits = 0
        self.write_errors: list[str] = []

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
                    cur.execute(
                        f"SELECT {', '.join(COLUMNS)}, sent_at FROM {self.table} "
                        f"WHERE ti_key = {self._hook.placeholder}",
                        (self.key.digest,),
                    )
                    rows = cur.fetchall()
                conn.commit()
        except Exception as err:
            raise LedgerError(
                f"The send ledger on connection {self.conn_id!r} is unavailable "
                f"({type(err).__name__}: {err}). Nothing was sent; fix the connection or run "
                "without ledger_conn_id."
            ) from None
        self._writer = threading.Thread(target=self._write_loop, name="voxsms-ledger", daemon=True)
        self._writer.start()
        frame = pd.DataFrame(rows, columns=[*COLUMNS, "sent_at"])
        frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
        return frame

    # -- writing ------------------------------------------------------------------------------

    def claim(self, batch: Batch) -> bool:
        """Record a batch as in flight, committed, before it is sent.

        Returns False when another try of this task instance holds some of its numbers.
        """
        now, digest, tx = _now(), self.key.digest, text_hash(batch.text)
        k = self.key
        rows = [
            (digest, n, tx, IN_FLIGHT, k.dag_id, k.run_id, k.task_id, k.map_index, now, now)
            for n in batch.numbers
        ]
        sql = (
            f"INSERT INTO {self.table} (ti_key, destination_number, text_hash, status, dag_id, "
            f"run_id, task_id, map_index, sent_at, updated_at) VALUES ({self._marks(10)})"
        )
        return self._submit(lambda cur: cur.executemany(sql, rows), wait=True)

    def record(self, outcome: BatchOutcome) -> None:
        """Record a batch's outcome (queued; committed with the next group)."""
        tx, digest, now = text_hash(outcome.batch.text), self.key.digest, _now()
        where = f"ti_key = {self._hook.placeholder} AND destination_number = "
        where += f"{self._hook.placeholder} AND text_hash = {self._hook.placeholder}"
        if not outcome.sent:
            sql = f"DELETE FROM {self.table} WHERE {where}"
            rows = [(digest, n, tx) for n in outcome.batch.numbers]
            self._submit(lambda cur: cur.executemany(sql, rows), wait=False)
            return
        update = (
            f"UPDATE {self.table} SET status = {self._marks(1)}, message_id = {self._marks(1)}, "
            f"error_code = {self._marks(1)}, error_description = {self._marks(1)}, "
            f"updated_at = {self._marks(1)} WHERE {where}"
        )
        rows = [(ACCEPTED, mid, None, None, now, digest, n, tx) for n, mid in outcome.accepted]
        rows += [(FAILED, None, c, d, now, digest, n, tx) for n, c, d in outcome.failed]
        rows += [(UNKNOWN, None, None, d, now, digest, n, tx) for n, d in outcome.unknown]
        self._submit(lambda cur: cur.executemany(update, rows), wait=False)

    def resolve(self, found: dict[tuple[str, str], int], still_unknown: list[tuple[str, str]]):
        """After reconciliation: in-flight rows found in the API's history become ``accepted``
        (with their message id); the rest become ``unknown``. Keys are (number, text_hash).
        """
        where = f"ti_key = {self._hook.placeholder} AND destination_number = "
        where += f"{self._hook.placeholder} AND text_hash = {self._hook.placeholder}"
        sql = (
            f"UPDATE {self.table} SET status = {self._marks(1)}, message_id = {self._marks(1)}, "
            f"updated_at = {self._marks(1)} WHERE {where}"
        )
        now, digest = _now(), self.key.digest
        rows = [(ACCEPTED, mid, now, digest, n, tx) for (n, tx), mid in found.items()]
        rows += [(UNKNOWN, None, now, digest, n, tx) for n, tx in still_unknown]
        if rows:
            self._submit(lambda cur: cur.executemany(sql, rows), wait=True)

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
                f"{self.write_errors[0]}. The rows stay 'in_flight'; a retry reconciles them."
            )

    # -- the writer thread --------------------------------------------------------------------

    def _marks(self, count: int) -> str:
        return ", ".join([self._hook.placeholder] * count)

    def _submit(self, apply: Callable[[Any], None] | None, *, wait: bool) -> Any:
        if self._writer is None:
            raise LedgerError("the send ledger is not open")
        future: Future = Future()
        self._jobs.put((apply, future))
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
        try:
            with transactional(db_api_hook(self.conn_id)) as conn:
                stopping = False
                while not stopping:
                    jobs = [self._jobs.get()]
                    while len(jobs) < MAX_JOBS_PER_COMMIT and not self._jobs.empty():
                        jobs.append(self._jobs.get_nowait())
                    stopping = any(apply is None for apply, _ in jobs)
                    self._commit(conn, [job for job in jobs if job[0] is not None])
                    for apply, future in jobs:
                        if apply is None:
                            future.set_result(None)
        except Exception as err:  # the connection is gone: fail every job until close()
            self.write_errors.append(f"{type(err).__name__}: {err}")
            while True:
                apply, future = self._jobs.get()
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
                for apply, _ in jobs:
                    apply(cur)
            conn.commit()
            self.commits += 1
            for _, future in jobs:
                future.set_result(None)
        except Exception as err:
            conn.rollback()
            if len(jobs) == 1:
                if not is_unique_violation(err):
                    self.write_errors.append(f"{type(err).__name__}: {err}")
                    log.error("Send ledger write failed: %s: %s", type(err).__name__, err)
                jobs[0][1].set_exception(err)
                return
            for job in jobs:
                self._commit(conn, [job])
