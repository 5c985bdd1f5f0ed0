"""Write the numbers a send could not deliver to a table on any common-sql connection.

The table is created if absent with DDL that works on SQLite and PostgreSQL alike; everything
else goes through the connection's own ``DbApiHook`` (its placeholder and INSERT format), so no
SQL dialect is chosen here. One task instance owns its rows: writing again for the same
``(dag_id, run_id, task_id, map_index)`` replaces them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from airflow_provider_voxsms.sms.model import FAILED_COLUMNS, FAILED_STAGES
from airflow_provider_voxsms.storage.key import TASK_COLUMNS
from airflow_provider_voxsms.storage.schema import FAILED_NUMBERS
from airflow_provider_voxsms.storage.sql import check_table_name, sql_texts

__all__ = ["FAILED_NUMBER_COLUMNS", "log_failed_numbers"]

#: Columns the ``failed_numbers`` frame must have (more are ignored); ``input_number`` is
#: stored when present.
FAILED_NUMBER_COLUMNS = tuple(c for c in FAILED_COLUMNS if c != "input_number")

# After the task key (key.TASK_COLUMNS); the last is the time of writing.
_DATA_COLUMNS = (
    "destination_number",
    "input_number",
    "error_code",
    "error_description",
    "stage",
    "logged_at",
)


def log_failed_numbers(
    failed: pd.DataFrame,
    *,
    conn_id: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int = -1,
    table: str = "sms_failed_numbers",
) -> int:
    """Replace one task instance's failed numbers in ``table``; return the number of rows written.

    Rows already stored for the same ``dag_id``, ``run_id``, ``task_id`` and ``map_index`` are
    deleted and ``failed`` inserted in one transaction, so a retried task never duplicates rows
    and an empty frame clears them. ``logged_at`` is the UTC time of the call.

    :param failed: frame with columns ``destination_number``, ``error_code`` (integer, or
        NaN/None for validation failures; stored as NULL), ``error_description`` and ``stage``
        (``validation``, ``api``, ``not_sent`` or ``delivery``), and optionally
        ``input_number`` (the number as the input wrote it), as the operators push them.
    :param conn_id: Airflow connection whose hook is a common-sql ``DbApiHook``.
    :param dag_id: DAG id of the task instance that owns the rows.
    :param run_id: DAG run id of that task instance.
    :param task_id: task id of that task instance.
    :param map_index: map index of a mapped task instance; -1 when not mapped.
    :param table: plain identifier (letters, digits, underscore; at most 48 characters).
    :raises ValueError: on a bad table name, missing columns, non-integer error codes or an
        unknown stage.
    :raises TypeError: if the connection's hook is not a ``DbApiHook``.
    """
    check_table_name(table)
    key = dict(zip(TASK_COLUMNS, (dag_id, run_id, task_id, int(map_index)), strict=True))
    return FAILED_NUMBERS.replace(conn_id, table, key, _DATA_COLUMNS, _prepared_columns(failed))


def _prepared_columns(failed: pd.DataFrame) -> list[Sequence[Any]]:
    """The data columns as Python values (None for missing), validated, in table order."""
    if not isinstance(failed, pd.DataFrame):
        raise TypeError(f"failed must be a pandas DataFrame, got {type(failed).__name__}")
    missing = [c for c in FAILED_NUMBER_COLUMNS if c not in failed.columns]
    if missing:
        raise ValueError(f"failed numbers frame is missing columns: {', '.join(missing)}")

    try:
        codes = pd.to_numeric(failed["error_code"]).astype("Int64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"error_code must hold integers or NaN/None: {exc}") from None
    stages = failed["stage"]
    bad_stages = sorted(map(str, set(stages[~stages.isin(FAILED_STAGES)].unique())))
    if bad_stages:
        raise ValueError(
            f"stage must be one of {sorted(FAILED_STAGES)}, got: {', '.join(bad_stages[:10])}"
        )
    written = (
        failed["input_number"] if "input_number" in failed else pd.Series([None] * len(failed))
    )
    return [
        sql_texts(failed["destination_number"]),
        sql_texts(written),
        codes.to_numpy(dtype=object, na_value=None),
        sql_texts(failed["error_description"]),
        stages.to_numpy(dtype=object),
    ]
