"""Write followed messages' delivery statuses to a table on any common-sql connection.

Like ``failed_numbers``: the table is created if absent (DDL that works on SQLite and
PostgreSQL alike), rows go through the connection's own ``DbApiHook``, and one task instance
owns its rows: writing again for the same ``(dag_id, run_id, task_id, map_index)`` replaces
them in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from itertools import islice, repeat

import pandas as pd

from airflow_provider_voxsms.sms.delivery import DELIVERY_COLUMNS
from airflow_provider_voxsms.sql import check_table_name, db_api_hook, ensure_schema, transactional

__all__ = ["log_delivery_status"]

_TABLE_COLUMNS = ("dag_id", "run_id", "task_id", "map_index", *DELIVERY_COLUMNS, "checked_at")
_BATCH_ROWS = 10_000

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    message_id BIGINT NOT NULL,
    destination_number TEXT,
    delivery_status VARCHAR(16) NOT NULL,
    error_message TEXT,
    fragments INTEGER,
    cost DOUBLE PRECISION,
    processing_date TEXT,
    checked_at TIMESTAMP NOT NULL
)"""
_CREATE_INDEX = "CREATE INDEX IF NOT EXISTS ix_{table}_ti ON {table} (dag_id, run_id, task_id)"


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

    :param statuses: the ``delivery_status`` frame (``sms.delivery.DELIVERY_COLUMNS``).
    :param conn_id: Airflow connection whose hook is a common-sql ``DbApiHook``.
    :param dag_id: DAG id of the task instance that owns the rows; likewise ``run_id``,
        ``task_id`` and ``map_index`` (-1 when not mapped).
    :param table: plain identifier (letters, digits, underscore; at most 48 characters).
    ``checked_at`` is the UTC time of the call.
    """
    check_table_name(table)
    missing = [c for c in DELIVERY_COLUMNS if c not in statuses.columns]
    if missing:
        raise ValueError(f"delivery status frame is missing columns: {', '.join(missing)}")
    hook = db_api_hook(conn_id)
    key = (dag_id, run_id, task_id, int(map_index))
    checked_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    n_rows = len(statuses)
    columns = [
        statuses["message_id"].astype("int64").to_numpy(dtype=object),
        _texts(statuses["destination_number"]),
        _texts(statuses["delivery_status"]),
        _texts(statuses["error_message"]),
        statuses["fragments"].astype("Int64").to_numpy(dtype=object, na_value=None),
        statuses["cost"].astype("Float64").to_numpy(dtype=object, na_value=None),
        _texts(statuses["processing_date"]),
    ]
    rows = zip(
        *(repeat(value, n_rows) for value in key),
        *columns,
        repeat(checked_at, n_rows),
        strict=True,
    )
    ph = hook.placeholder
    delete_sql = (
        f"DELETE FROM {table} WHERE dag_id = {ph} AND run_id = {ph} "
        f"AND task_id = {ph} AND map_index = {ph}"
    )
    insert_sql = hook.dialect.generate_insert_sql(table, _TABLE_COLUMNS, list(_TABLE_COLUMNS))
    with transactional(hook) as conn:
        ensure_schema(
            conn,
            [_CREATE_TABLE.format(table=table), _CREATE_INDEX.format(table=table)],
            probe=f"SELECT dag_id FROM {table} WHERE 1 = 0",
        )
        with closing(conn.cursor()) as cur:
            cur.execute(delete_sql, key)
            for batch in _batches(rows, _BATCH_ROWS):
                cur.executemany(insert_sql, batch)
        conn.commit()
    hook.log.info("Logged %d delivery statuses to %s for %s", n_rows, table, key)
    return n_rows


def _texts(column: pd.Series):
    return column.astype("string").to_numpy(dtype=object, na_value=None)


def _batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    while batch := list(islice(rows, size)):
        yield batch
