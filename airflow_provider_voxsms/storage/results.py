"""Every recipient's outcome in a table, written chunk by chunk, instead of in XComs.

Airflow's metadata database holds XComs; a million-row XCom is a million-row blob that every
downstream task reads again. With ``results_conn_id`` the send writes one row per input row to
``<prefix>_outcomes`` on any common-sql connection (DDL that works on SQLite and PostgreSQL;
inserts of many rows per statement), and its XComs only say where the rows are. A task
instance owns its rows: a try deletes what earlier tries wrote, then writes as it goes, so
after a try that finished there is exactly one row per input row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import closing
from typing import Any

import pandas as pd

from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
from airflow_provider_voxsms.storage.sql import (
    TASK_KEY_COLUMNS,
    check_table_name,
    db_api_hook,
    ensure_schema,
    sql_texts,
    transactional,
)

# Which outcomes each of the send's output XComs stands for, when they are in the table.
XCOM_OUTCOMES = {
    "accepted_numbers": ["accepted"],
    "failed_numbers": ["invalid", "failed", "not_sent"],
    "unknown_numbers": ["unknown"],
    "deferred_numbers": ["deferred"],
}
_ROWS_PER_INSERT = 500  # 13 columns: 6,500 parameters, within SQLite's and PostgreSQL's limits

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL,
    destination_number VARCHAR(16),
    input_number TEXT,
    outcome VARCHAR(16) NOT NULL,
    message_id BIGINT,
    error_code BIGINT,
    reason TEXT,
    time_zone TEXT,
    next_window_start VARCHAR(40),
    recorded_at TIMESTAMP NOT NULL
)"""
_CREATE_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_{table}_ti ON {table} (dag_id, run_id, task_id, map_index)"
)


def outcomes_table(prefix: str) -> str:
    """The outcomes table's name for a prefix (checked to be a plain identifier)."""
    table = f"{prefix}_outcomes"
    check_table_name(table)
    return table


class ResultsTable:
    """One task instance's rows of ``<prefix>_outcomes``: cleared on open, appended per chunk.

    Use it as a context manager; :meth:`location` says where the rows are (for XComs).
    """

    def __init__(self, conn_id: str, prefix: str, key: tuple[str, str, str, int]) -> None:
        self.conn_id = conn_id
        self.table = outcomes_table(prefix)
        self.key = key
        self.rows = 0
        self._hook = None
        self._conn = None

    def location(self, outcomes: Sequence[str] | None = None, rows: int | None = None) -> dict:
        """Where this task instance's rows are: connection, table and task key (and which
        ``outcomes``, how many ``rows``, when given)."""
        where = {"conn_id": self.conn_id, "table": self.table}
        where.update(zip(TASK_KEY_COLUMNS, self.key, strict=True))
        if outcomes is not None:
            where["outcomes"] = list(outcomes)
        if rows is not None:
            where["rows"] = rows
        return where

    def __enter__(self) -> ResultsTable:
        self._hook = db_api_hook(self.conn_id)
        self._transaction = transactional(self._hook)
        self._conn = self._transaction.__enter__()
        ensure_schema(
            self._conn,
            [_CREATE_TABLE.format(table=self.table), _CREATE_INDEX.format(table=self.table)],
            probe=f"SELECT outcome FROM {self.table} WHERE 1 = 0",
        )
        with closing(self._conn.cursor()) as cur:
            cur.execute(f"DELETE FROM {self.table} WHERE {_task_filter(self._hook)}", self.key)
        self._conn.commit()
        return self

    def __exit__(self, *exc_info) -> None:
        self._transaction.__exit__(*exc_info)

    def write(self, frame: pd.DataFrame) -> None:
        """Insert ``frame`` (``OUTCOME_COLUMNS``) and commit: through ``COPY`` where the driver
        has it (PostgreSQL's drivers), else in multi-row INSERTs."""
        if frame.empty:
            return
        now = pd.Timestamp.now(tz="UTC").tz_localize(None).isoformat(sep=" ")
        with closing(self._conn.cursor()) as cur:
            if hasattr(cur, "copy_expert") or hasattr(cur, "copy"):  # psycopg2 / psycopg 3
                self._copy(cur, frame, now)
            else:
                self._insert(cur, frame, now)
        self._conn.commit()
        self.rows += len(frame)

    def _copy(self, cur, frame: pd.DataFrame, now: str) -> None:
        """PostgreSQL's COPY of the rows as CSV; ``\\N`` marks NULL, so an empty text stays
        an empty text."""
        table = pd.DataFrame(dict(zip(TASK_KEY_COLUMNS, self.key, strict=True)), index=frame.index)
        table = pd.concat([table, frame[OUTCOME_COLUMNS]], axis=1)
        table["message_id"] = pd.array(table["message_id"], dtype="Int64")
        table["error_code"] = pd.array(table["error_code"], dtype="Int64")
        table["recorded_at"] = now
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, header=False, na_rep=r"\N")
        buffer.seek(0)
        names = ", ".join([*TASK_KEY_COLUMNS, *OUTCOME_COLUMNS, "recorded_at"])
        sql = rf"COPY {self.table} ({names}) FROM STDIN WITH (FORMAT csv, NULL '\N')"
        if hasattr(cur, "copy_expert"):
            cur.copy_expert(sql, buffer)
        else:
            with cur.copy(sql) as copy:
                copy.write(buffer.getvalue())

    def _insert(self, cur, frame: pd.DataFrame, now: str) -> None:
        n = len(frame)
        columns = [
            *([value] * n for value in self.key),
            sql_texts(frame["destination_number"]),
            sql_texts(frame["input_number"]),
            frame["outcome"].to_numpy(dtype=object),
            _ints(frame["message_id"]),
            _ints(frame["error_code"]),
            sql_texts(frame["reason"]),
            sql_texts(frame["time_zone"]),
            sql_texts(frame["next_window_start"]),
            [now] * n,
        ]
        rows = list(zip(*columns, strict=True))
        names = [*TASK_KEY_COLUMNS, *OUTCOME_COLUMNS, "recorded_at"]
        mark = self._hook.placeholder
        one_row = "(" + ", ".join([mark] * len(names)) + ")"
        head = f"INSERT INTO {self.table} ({', '.join(names)}) VALUES "
        for start in range(0, n, _ROWS_PER_INSERT):
            part = rows[start : start + _ROWS_PER_INSERT]
            cur.execute(head + ", ".join([one_row] * len(part)), _flat(part))


def read_outcomes(location: dict, columns: Sequence[str] = OUTCOME_COLUMNS) -> pd.DataFrame:
    """The rows a :meth:`ResultsTable.location` points at (only its ``outcomes``, if it names
    them), as a DataFrame of ``columns``."""
    table = location["table"]
    check_table_name(table)
    hook = db_api_hook(location["conn_id"])
    key = tuple(location[column] for column in TASK_KEY_COLUMNS)
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {_task_filter(hook)}"
    params: list[Any] = list(key)
    if outcomes := location.get("outcomes"):
        sql += f" AND outcome IN ({', '.join([hook.placeholder] * len(outcomes))})"
        params += list(outcomes)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cur:
        cur.execute(sql, params)
        rows = pd.DataFrame(cur.fetchall(), columns=list(columns), dtype=object)
    for column in {"message_id", "error_code"} & set(rows.columns):  # exact, NULLs and all
        rows[column] = pd.array(rows[column].tolist(), dtype="Int64")
    return rows


def is_location(value: Any) -> bool:
    """True for a dict that says where a send's rows are (or a summary that carries one)."""
    return isinstance(value, dict) and ("table" in value or isinstance(value.get("results"), dict))


def _task_filter(hook) -> str:
    return " AND ".join(f"{column} = {hook.placeholder}" for column in TASK_KEY_COLUMNS)


def _ints(column: pd.Series) -> list:
    return pd.array(column, dtype="Int64").to_numpy(dtype=object, na_value=None).tolist()


def _flat(rows: list[tuple]) -> list:
    return [value for row in rows for value in row]
