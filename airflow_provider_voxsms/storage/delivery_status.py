"""Write followed messages' delivery statuses to a table on any common-sql connection.

Like ``failed_numbers``: the table is created if absent (DDL that works on SQLite and
PostgreSQL alike), rows go through the connection's own ``DbApiHook``, and one task instance
owns its rows, keyed ``(dag_id, run_id, task_id, map_index)``. The delivery report writes them
as it goes (:class:`DeliveryStatusTable`: cleared when a try starts, then appended a block at a
time from a thread), so a report on a million messages never holds their rows;
:func:`log_delivery_status` replaces a task instance's rows with a frame in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from contextlib import closing, suppress
from typing import Any

import pandas as pd

from airflow_provider_voxsms.errors import ResultsError
from airflow_provider_voxsms.sms.delivery import DELIVERY_COLUMNS
from airflow_provider_voxsms.storage import summary
from airflow_provider_voxsms.storage.key import TASK_COLUMNS
from airflow_provider_voxsms.storage.schema import DELIVERY_STATUS
from airflow_provider_voxsms.storage.sql import (
    check_table_name,
    db_api_hook,
    insert_frame,
    sql_texts,
    transactional,
    utc_now_text,
    where,
)
from airflow_provider_voxsms.storage.writer import GroupedWriter

__all__ = ["DeliveryStatusTable", "log_delivery_status"]

_TEXTS = ("destination_number", "delivery_status", "error_message", "processing_date")


class DeliveryStatusTable:
    """One task instance's rows of the status table, written as they come.

    Entering creates the table where absent and deletes the task instance's rows (a try
    replaces what an earlier try wrote); :meth:`write` queues a block of rows for a thread with
    its own connection (``COPY`` on PostgreSQL); leaving commits every block written, and
    raises :class:`ResultsError` if a write failed.

    :param conn_id: Airflow connection whose hook is a common-sql ``DbApiHook``.
    :param key: the task instance: ``dag_id``, ``run_id``, ``task_id``, ``map_index``.
    :param table: plain identifier (letters, digits, underscore; at most 48 characters).
    :param results: the send results locations (``ResultsTable.location``) whose accepted
        rows were followed, on this same connection: their delivered per text variant is
        stored with the counts (the campaign page's one join of the two tables).
    """

    def __init__(
        self,
        conn_id: str,
        key: Mapping[str, Any],
        table: str = "sms_delivery_status",
        results: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        check_table_name(table)
        if tuple(key) != TASK_COLUMNS:
            raise ValueError(f"the key must give {TASK_COLUMNS}, got {tuple(key)}")
        self.conn_id, self.table, self.key = conn_id, table, dict(key)
        self.results = [dict(location) for location in results]
        self.rows = 0
        self._writer = GroupedWriter(
            conn_id,
            what="delivery status table",
            error=ResultsError,
            after_failure="A retry of the delivery report writes its rows again.",
        )
        self._last: Future | None = None

    def __enter__(self) -> DeliveryStatusTable:
        self._hook = db_api_hook(self.conn_id)
        with transactional(self._hook) as conn:
            DELIVERY_STATUS.ensure(conn, self.table)
            summary.ensure(conn)
            with closing(conn.cursor()) as cur:  # the rows and their counts go together
                cur.execute(
                    f"DELETE FROM {self.table} WHERE {where(self._hook, TASK_COLUMNS)}",
                    tuple(self.key.values()),
                )
                summary.forget(cur, self._hook.placeholder, self.table, self.key)
            conn.commit()
        self._writer.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit the rows; after a try without error, store their counts
        (:mod:`.summary`): a try that failed part-way leaves none."""
        if exc is None:
            self._writer.close()
            summary.store(
                self._hook, self.table, self.key, summary.REPORT_KINDS, joined=self.results
            )
        else:
            with suppress(ResultsError):  # the error in flight matters more
                self._writer.close()

    def write(self, statuses: pd.DataFrame) -> None:
        """Queue rows (``DELIVERY_COLUMNS``). Waits for the block queued before, so at most one
        block waits here; raises if that one failed."""
        if statuses.empty:
            return
        if self._last is not None:
            try:
                self._last.result()
            except Exception as err:
                raise ResultsError(
                    f"Writing the delivery status table failed: {type(err).__name__}: {err}"
                ) from None
        rows = pd.concat(
            [pd.DataFrame(self.key, index=statuses.index), statuses[DELIVERY_COLUMNS]], axis=1
        )
        rows["checked_at"] = utc_now_text(timespec="auto")
        hook, table = self._hook, self.table
        self._last = self._writer.submit(
            lambda cur: insert_frame(cur, hook, table, rows, _TEXTS), wait=False
        )
        self.rows += len(rows)


def log_delivery_status(
    statuses: pd.DataFrame,
    *,
    conn_id: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int = -1,
    table: str = "sms_delivery_status",
) -> int:
    """Replace one task instance's rows in ``table`` with ``statuses``; return the rows written.
    ``checked_at`` is the UTC time of the call.

    :param statuses: the ``delivery_status`` frame (``sms.delivery.DELIVERY_COLUMNS``).
    :param conn_id: Airflow connection whose hook is a common-sql ``DbApiHook``.
    :param dag_id: DAG id of the task instance that owns the rows; likewise ``run_id``,
        ``task_id`` and ``map_index`` (-1 when not mapped).
    :param table: plain identifier (letters, digits, underscore; at most 48 characters).
    """
    check_table_name(table)
    missing = [c for c in DELIVERY_COLUMNS if c not in statuses.columns]
    if missing:
        raise ValueError(f"delivery status frame is missing columns: {', '.join(missing)}")
    columns = [
        statuses["message_id"].astype("int64").to_numpy(dtype=object),
        sql_texts(statuses["destination_number"]),
        sql_texts(statuses["delivery_status"]),
        sql_texts(statuses["error_message"]),
        statuses["fragments"].astype("Int64").to_numpy(dtype=object, na_value=None),
        statuses["cost"].astype("Float64").to_numpy(dtype=object, na_value=None),
        sql_texts(statuses["processing_date"]),
    ]
    key = dict(zip(TASK_COLUMNS, (dag_id, run_id, task_id, int(map_index)), strict=True))
    hook = db_api_hook(conn_id)
    summary.forget_now(hook, table, key)  # never counts of rows being replaced
    rows = DELIVERY_STATUS.replace(conn_id, table, key, (*DELIVERY_COLUMNS, "checked_at"), columns)
    summary.store(hook, table, key, summary.REPORT_KINDS)
    return rows
