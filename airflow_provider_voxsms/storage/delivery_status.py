"""Write followed messages' delivery statuses to a table on any common-sql connection.

Like ``failed_numbers``: the table is created if absent (DDL that works on SQLite and
PostgreSQL alike), rows go through the connection's own ``DbApiHook``, and one task instance
owns its rows: writing again for the same ``(dag_id, run_id, task_id, map_index)`` replaces
them in one transaction.
"""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms.delivery import DELIVERY_COLUMNS
from airflow_provider_voxsms.storage.key import TASK_COLUMNS
from airflow_provider_voxsms.storage.schema import DELIVERY_STATUS
from airflow_provider_voxsms.storage.sql import check_table_name, sql_texts

__all__ = ["log_delivery_status"]


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
    key = dict(zip(TASK_COLUMNS, (dag_id, run_id, task_id, int(map_index)), strict=True))
    return DELIVERY_STATUS.replace(conn_id, table, key, (*DELIVERY_COLUMNS, "checked_at"), columns)
