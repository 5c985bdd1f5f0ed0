"""The little SQL the provider runs itself, on any common-sql connection without dialect branches."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

SQLITE_BUSY_TIMEOUT_S = 60.0  # how long a write waits for another writer of a SQLite file

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
        _wait_for_other_writers(conn)
        if hook.supports_autocommit:
            hook.set_autocommit(conn, False)
        try:
            yield conn
        except BaseException:
            with suppress(Exception):  # a dead connection must not hide the real error
                conn.rollback()
            raise


def _wait_for_other_writers(conn: Any) -> None:
    """Let a SQLite write wait up to ``SQLITE_BUSY_TIMEOUT_S`` for the file's other writers.

    SQLite lets one writer at a time; the others poll (up to every 100 ms) and sqlite3 gives
    up after 5 s with "database is locked". Campaigns sharing one ledger file (frequency caps,
    mapped instances, a takeover) commit in turn, and a busy writer can win poll after poll
    for longer than that. The one setting here that depends on the driver.
    """
    if isinstance(conn, sqlite3.Connection):
        conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")


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


def index_probe(conn: Any, table: str, name: str, partial: str | None = None) -> str:
    """A query that fails while ``table`` has no index ``ix_<table>_<name>`` (as
    :class:`~.schema.TableSchema` names them; ``partial``: its ``WHERE``): SQLite refuses an
    ``INDEXED BY`` it cannot find (or use: hence the partial index's own condition),
    PostgreSQL a name that is no relation. Neither has a portable way to ask."""
    index = f"ix_{table}_{name}"
    check_table_name(table)
    if isinstance(conn, sqlite3.Connection):
        return f"SELECT 1 FROM {table} INDEXED BY {index} WHERE ({partial or '1 = 1'}) AND 1 = 0"
    return f"SELECT CAST('{index}' AS regclass)"


def is_unique_violation(error: BaseException) -> bool:
    """True for a DB-API IntegrityError (the class every driver raises for a duplicate key)."""
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


def where(hook: DbApiHook, columns: Iterable[str]) -> str:
    """``a = ? AND b = ?`` for ``columns``, with the connection's placeholder."""
    return " AND ".join(f"{column} = {hook.placeholder}" for column in columns)


def utc_now_text(timespec: str = "seconds") -> str:
    """The current UTC time as the tables store it: ``YYYY-MM-DD HH:MM:SS``, no zone."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec=timespec)


def sql_texts(column) -> Sequence[Any]:
    """A pandas column as Python strings, None where missing."""
    return column.astype("string").to_numpy(dtype=object, na_value=None)


def stored_utc(value: str | datetime) -> datetime:
    """A timestamp as a table returns it (text from SQLite, a naive datetime from
    PostgreSQL), as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_frame(cur: Any, hook: DbApiHook, table: str, frame: Any, texts: Sequence[str]) -> None:
    """Insert a DataFrame's rows (its columns are the table's): PostgreSQL's ``COPY`` where the
    driver has it (psycopg2, psycopg 3; ``\\N`` marks NULL, so an empty text stays empty),
    else ``executemany`` of the dialect's INSERT (sqlite3 loops over the rows in C). ``texts``:
    the text columns (written as Python strings, None where missing)."""
    check_table_name(table)
    names = ", ".join(frame.columns)
    if hasattr(cur, "copy_expert") or hasattr(cur, "copy"):
        import io

        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False, na_rep=r"\N")
        sql = rf"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv, NULL '\N')"
        if hasattr(cur, "copy_expert"):
            buffer.seek(0)
            cur.copy_expert(sql, buffer)
        else:
            with cur.copy(sql) as copy:
                copy.write(buffer.getvalue())
        return
    columns = [
        sql_texts(frame[name])
        if name in texts
        else frame[name].to_numpy(dtype=object, na_value=None)
        for name in frame.columns
    ]
    marks = ", ".join([hook.placeholder] * len(frame.columns))
    cur.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({marks})", list(zip(*columns, strict=True))
    )
