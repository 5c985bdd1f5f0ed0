"""Write followed messages' delivery statuses to a table on any common-sql connection.

Like ``failed_numbers``: the table is created if absent (DDL that works on SQLite and
PostgreSQL alike), rows go through the connection's own ``DbApiHook``, and one task instance
owns its rows: writing again for the same ``(dag_id, run_id, task_id, map_index)`` replaces
them in one transaction.
"""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms.delivery import DELIVERY_COLUMNS
from airflow_provider_voxsms.storage.sql import check_table_name, replace_task_rows, sql_texts

__all__ = ["log_delivery_status"]


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
    columns = [
        statuses["message_id"].astype("int64").to_numpy(dtype=object),
        sql_texts(statuses["destination_number"]),
        sql_texts(statuses["delivery_status"]),
        sql_texts(statuses["error_message"]),
        statuses["fragments"].astype("Int64").to_numpy(dtype=object, na_value=None),
        statuses["cost"].astype("Float64").to_numpy(dtype=object, na_value=None),
        sql_texts(statuses["processing_date"]),
    ]
    return replace_task_rows(
        conn_id,
        table,
        (dag_id, run_id, task_id, int(map_index)),
        (*DELIVERY_COLUMNS, "checked_at"),
        columns,
        schema=[
            (
                [_CREATE_TABLE.format(table=table), _CREATE_INDEX.format(table=table)],
                f"SELECT dag_id FROM {table} WHERE 1 = 0",
            )
        ],
    )
