"""Write the numbers a send could not deliver to a table on any common-sql connection.

The table is created if absent with DDL that works on SQLite and PostgreSQL alike; everything
else goes through the connection's own ``DbApiHook`` (its placeholder and INSERT format), so no
SQL dialect is chosen here. One task instance owns its rows: writing again for the same
``(dag_id, run_id, task_id, map_index)`` replaces them in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import closing, suppress
from datetime import UTC, datetime
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

__all__ = ["FAILED_NUMBER_COLUMNS", "log_failed_numbers"]

#: Columns the ``failed_numbers`` frame must have (more are ignored).
FAILED_NUMBER_COLUMNS = ("destination_number", "error_code", "error_description", "stage")
STAGES = frozenset({"validation", "api"})

_TABLE_COLUMNS = (
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "destination_number",
    "error_code",
    "error_description",
    "stage",
    "logged_at",
)
# Short enough that "ix_<table>_ti" stays within PostgreSQL's 63-character identifiers.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_BATCH_ROWS = 10_000

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    destination_number TEXT,
    error_code BIGINT,
    error_description TEXT,
    stage VARCHAR(16) NOT NULL,
    logged_at TIMESTAMP NOT NULL
)"""
_CREATE_INDEX = "CREATE INDEX IF NOT EXISTS ix_{table}_ti ON {table} (dag_id, run_id, task_id)"


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
        (``"validation"`` or ``"api"``).
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
    _check_table_name(table)
    columns = _prepared_columns(failed)
    hook = _db_api_hook(conn_id)
    key = (dag_id, run_id, task_id, int(map_index))
    logged_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    n_rows = len(failed)
    rows = zip(
        *(repeat(value, n_rows) for value in key),
        *columns,
        repeat(logged_at, n_rows),
        strict=True,
    )
    ph = hook.placeholder
    delete_sql = (
        f"DELETE FROM {table} WHERE dag_id = {ph} AND run_id = {ph} "
        f"AND task_id = {ph} AND map_index = {ph}"
    )
    insert_sql = hook.dialect.generate_insert_sql(table, _TABLE_COLUMNS, list(_TABLE_COLUMNS))

    with closing(hook.get_conn()) as conn:
        if hook.supports_autocommit:
            hook.set_autocommit(conn, False)
        _ensure_table(conn, table)
        try:
            with closing(conn.cursor()) as cur:
                cur.execute(delete_sql, key)
                for batch in _batches(rows, _BATCH_ROWS):
                    cur.executemany(insert_sql, batch)
            conn.commit()
        except BaseException:
            with suppress(Exception):  # a dead connection must not hide the real error
                conn.rollback()
            raise
    hook.log.info("Logged %d failed numbers to %s for %s", n_rows, table, key)
    return n_rows


def _check_table_name(table: str) -> None:
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"table must be a plain identifier (letters, digits, underscore; not starting with "
            f"a digit; at most 48 characters), got {table!r}"
        )


def _prepared_columns(failed: pd.DataFrame) -> list[Sequence[Any]]:
    """The four data columns as Python values (None for missing), validated, in table order."""
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
    bad_stages = sorted(map(str, set(stages[~stages.isin(STAGES)].unique())))
    if bad_stages:
        raise ValueError(
            f"stage must be one of {sorted(STAGES)}, got: {', '.join(bad_stages[:10])}"
        )
    return [
        _texts(failed["destination_number"]),
        codes.to_numpy(dtype=object, na_value=None),
        _texts(failed["error_description"]),
        stages.to_numpy(dtype=object),
    ]


def _texts(column: pd.Series) -> Sequence[Any]:
    return column.astype("string").to_numpy(dtype=object, na_value=None)


def _db_api_hook(conn_id: str) -> DbApiHook:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection {conn_id!r} gives a {type(hook).__name__}, not a common-sql DbApiHook"
        )
    return hook


def _ensure_table(conn: Any, table: str) -> None:
    """Create the table and index if absent, committed on their own.

    Two tasks creating the table at the same moment can make PostgreSQL's ``IF NOT EXISTS``
    fail in the loser; its second try then finds the table.
    """
    for attempt in (1, 2):
        try:
            with closing(conn.cursor()) as cur:
                cur.execute(_CREATE_TABLE.format(table=table))
                cur.execute(_CREATE_INDEX.format(table=table))
            conn.commit()
            return
        except Exception:
            conn.rollback()
            if attempt == 2:
                raise


def _batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    while batch := list(islice(rows, size)):
        yield batch
