"""One background thread with its own connection that commits queued writes in groups.

The send ledger and the results table write through it. A write is a function of a cursor.
Those someone waits for (a claim, committed before its request leaves) share one commit;
those queued without a wait (outcomes, result rows) share another. A commit (a flush to disk)
costs about as much as the one-row inserts of every claim that queued during the previous
one: grouped, sixteen senders arriving at once wait for one commit instead of up to sixteen.
A group that fails is applied again one write at a time, so only the culprit fails; a
connection that dies fails every write until :meth:`GroupedWriter.close`, which raises.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing
from typing import Any

from airflow_provider_voxsms.storage.sql import db_api_hook, transactional

log = logging.getLogger(__name__)

MAX_JOBS_PER_COMMIT = 256

Apply = Callable[[Any], None]


class Refused(Exception):
    """A write's own "no" (e.g. the ledger's lease is lost): not a failed write. It rolls back
    its group like an error, and whoever waits for it gets it as it is."""


class GroupedWriter:
    """Commits writes from a thread with its own connection on ``conn_id``.

    :param what: what is written, for messages ("send ledger").
    :param error: the exception class raised for failed writes.
    :param after_failure: what a failed write means for the user, appended on close.
    """

    def __init__(
        self, conn_id: str, *, what: str, error: type[Exception], after_failure: str = ""
    ) -> None:
        self.conn_id, self.what, self.error, self.after_failure = (
            conn_id,
            what,
            error,
            after_failure,
        )
        self.write_errors: list[str] = []
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"voxsms-{self.what.replace(' ', '-')}", daemon=True
        )
        self._thread.start()

    def submit(self, apply: Apply, *, wait: bool) -> Future:
        """Queue a write; with ``wait``, return once it is committed (raising ``error`` if it
        failed, or its :class:`Refused` as it is)."""
        future = self._put(apply, wait)
        if wait:
            try:
                future.result()
            except Refused:
                raise
            except Exception as err:
                raise self.error(
                    f"Writing the {self.what} failed: {type(err).__name__}: {err}"
                ) from None
        return future

    def close(self) -> None:
        """Commit everything queued and stop the thread; raises if any write failed."""
        if self._thread is None:
            return
        done = self._put(None, False)
        self._thread.join()
        self._thread = None
        done.result()
        if self.write_errors:
            raise self.error(
                f"{len(self.write_errors)} {self.what} write(s) failed, first: "
                f"{self.write_errors[0]}. {self.after_failure}".rstrip()
            )

    def _put(self, apply: Apply | None, wait: bool) -> Future:
        if self._thread is None:
            raise self.error(f"the {self.what} is not open")
        future: Future = Future()
        self._jobs.put((apply, future, wait))
        return future

    def _loop(self) -> None:
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
            self._fail_the_rest(jobs, err)

    def _fail_the_rest(self, jobs: list, err: Exception) -> None:
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
                if isinstance(err, Refused):
                    err = gone  # the dead connection, not the refusal, is what stops the writer
                for _, future, _ in jobs:
                    future.set_exception(err)
                raise err from None
            if len(jobs) == 1:
                if not isinstance(err, Refused):
                    self.write_errors.append(f"{type(err).__name__}: {err}")
                    log.error("%s write failed: %s: %s", self.what, type(err).__name__, err)
                jobs[0][1].set_exception(err)
                return
            for job in jobs:
                self._commit(conn, [job])


def _commit_groups(jobs: list) -> list[list]:
    """The writes someone waits for in one transaction, then the queued ones in another."""
    waited_for = [job for job in jobs if job[2]]
    queued = [job for job in jobs if not job[2]]
    return [group for group in (waited_for, queued) if group]
