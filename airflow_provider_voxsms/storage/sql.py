"""The little SQL the provider runs itself, on any common-sql connection without dialect branches."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

# Short enough that "ix_<table>_..." stays within PostgreSQL's 63-character identifiers.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def check_table_name(table: str) -> None:
    """Refuse anything but a plain identifier, so a table name can never inject SQL."""
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"table must be a plain identifier (letters, digits, underscore; not starting with "
            f"a digit; at most 48 characters), got {table!r}"
        )


def db_api_hook(conn_id: str) -> DbApiHook:
    """The common-sql hook of an Airflow connection (SQLite, PostgreSQL, ...)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection {conn_id!r} gives a {type(hook).__name__}, not a common-sql DbApiHook"
        )
    return hook


def first_column(conn_id: str, sql: str) -> list:
    """The first column of a query's rows (e.g. opt-out numbers), on any common-sql connection."""
    return [row[0] for row in db_api_hook(conn_id).get_records(sql)]


@contextmanager
def transactional(hook: DbApiHook) -> Iterator[Any]:
    """A new connection with autocommit off; the caller commits, any error rolls back."""
    with closing(hook.get_conn()) as conn:
        if hook.supports_autocommit:
            hook.set_autocommit(conn, False)
        try:
            yield conn
        except BaseException:
            with suppress(Exception):  # a dead connection must not hide the real error
                conn.rollback()
            raise


def ensure_schema(conn: Any, statements: Sequence[str], *, probe: str) -> None:
    """Run ``CREATE ... IF NOT EXISTS`` statements, committed on their own, unless ``probe``
    (a SELECT from the object they create last) shows that they already ran.

    Skipping them matters on PostgreSQL: ``CREATE INDEX IF NOT EXISTS`` takes a SHARE lock on
    its table even when the index exists, so every task would wait for other tasks' open
    writes to that table, and could deadlock with them. Two tasks creating the same table at
    the same moment can make ``IF NOT EXISTS`` (or an ``ALTER``) fail in the loser; its second
    probe finds the object.
    """
    for attempt in (1, 2):
        try:
            with closing(conn.cursor()) as cur:
                cur.execute(probe)
                cur.fetchall()
            conn.commit()
            return
        except Exception:
            conn.rollback()
        try:
            with closing(conn.cursor()) as cur:
                for statement in statements:
                    cur.execute(statement)
            conn.commit()
            return
        except Exception:
            conn.rollback()
            if attempt == 2:
                raise


def is_unique_violation(error: BaseException) -> bool:
    """True for a DB-API IntegrityError (the class every driver raises for a duplicate key)."""
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


# The columns that say which task instance owns a row, first in every per-task table.
TASK_KEY_COLUMNS = ("dag_id", "run_id", "task_id", "map_index")
_INSERT_BATCH_ROWS = 10_000


def replace_task_rows(
    conn_id: str,
    table: str,
    key: tuple[str, str, str, int],
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    *,
    schema: Sequence[tuple[Sequence[str], str]],
) -> int:
    """Replace one task instance's rows of ``table`` in one transaction; return rows written.

    ``key`` fills ``TASK_KEY_COLUMNS``, ``values`` holds one sequence per name in ``columns``
    (Python values, None for NULL), and the last column is the UTC time of the call.
    ``schema`` lists (statements, probe) pairs run through :func:`ensure_schema` first, so the
    table is created (or brought up to date) where absent.
    """
    check_table_name(table)
    hook = db_api_hook(conn_id)
    n_rows = len(values[0]) if values else 0
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    rows = zip(*(repeat(v, n_rows) for v in key), *values, repeat(now, n_rows), strict=True)
    mark = hook.placeholder
    delete_sql = f"DELETE FROM {table} WHERE " + " AND ".join(
        f"{column} = {mark}" for column in TASK_KEY_COLUMNS
    )
    all_columns = [*TASK_KEY_COLUMNS, *columns]
    insert_sql = hook.dialect.generate_insert_sql(table, all_columns, all_columns)
    with transactional(hook) as conn:
        for statements, probe in schema:
            ensure_schema(conn, statements, probe=probe)
        with closing(conn.cursor()) as cur:
            cur.execute(delete_sql, key)
            for batch in _batches(rows, _INSERT_BATCH_ROWS):
                cur.executemany(insert_sql, batch)
        conn.commit()
    hook.log.info("Wrote %d rows to %s for %s", n_rows, table, key)
    return n_rows


def _batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    while batch := list(islice(rows, size)):
        yield batch


def sql_texts(column) -> Sequence[Any]:
    """A pandas column as Python strings, None where missing."""
    return column.astype("string").to_numpy(dtype=object, na_value=None)
