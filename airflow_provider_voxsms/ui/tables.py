"""One owner's rows of one table, on an open DB-API connection: the ``WHERE`` of every query.

The campaign page reads three kinds of rows: a send's outcomes (``<prefix>_outcomes``, keyed
by campaign), a delivery report's statuses (``sms_delivery_status``, keyed by task instance),
and either of them loaded from XCom into SQLite (:mod:`.xcom_tables`). :class:`OwnedRows`
hides which: a query names its columns and conditions, and gets the owner's rows only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from airflow_provider_voxsms.storage import summary
from airflow_provider_voxsms.storage.sql import check_table_name


@dataclass
class OwnedRows:
    """The rows of ``table`` whose ``key`` columns hold its values, on ``conn``.

    :param conn: an open DB-API connection (closed by whoever opened it).
    :param placeholder: the driver's parameter mark (``?`` for sqlite3, ``%s`` for psycopg2).
    :param dialect: ``"sqlite"`` or ``"postgresql"``: where SQL differs (time arithmetic).
    :param use_summary: read the counts the task stored when it finished
        (:mod:`~airflow_provider_voxsms.storage.summary`), where there are any; False counts
        the rows themselves (what the page does without a summary).
    """

    conn: Any
    placeholder: str
    dialect: str
    table: str
    key: Mapping[str, Any]
    use_summary: bool = True

    def __post_init__(self) -> None:
        check_table_name(self.table)
        self._stored: dict | bool | None = False  # False: not read yet

    def stored(self) -> dict[str, list[tuple]] | None:
        """The counts stored for these rows (kind -> groups), or None: read once."""
        if self._stored is False:
            self._stored = (
                summary.read(self.conn, self.placeholder, self.table, self.key)
                if self.use_summary
                else None
            )
        return self._stored

    def where(self, extra: str = "") -> str:
        """``WHERE`` the owner's key (and ``extra``, a condition with its own marks)."""
        text = " AND ".join(f"{column} = {self.placeholder}" for column in self.key)
        return f"WHERE {text}" + (f" AND ({extra})" if extra else "")

    def marks(self, count: int) -> str:
        """``?, ?, ?`` for an ``IN`` list of ``count`` values."""
        return ", ".join([self.placeholder] * count)

    def select(self, columns: str, extra: str = "", tail: str = "") -> str:
        return f"SELECT {columns} FROM {self.table} {self.where(extra)} {tail}".strip()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Every row of ``sql`` (a :meth:`select`), the key's values first among its params."""
        with closing(self.conn.cursor()) as cur:
            cur.execute(sql, (*self.key.values(), *params))
            return [tuple(row) for row in cur.fetchall()]

    def blocks(self, sql: str, params: Sequence[Any] = (), rows: int = 10_000) -> Iterator[list]:
        """The rows of ``sql``, ``rows`` at a time (a CSV of millions never sits in memory)."""
        with closing(self.conn.cursor()) as cur:
            cur.execute(sql, (*self.key.values(), *params))
            while block := cur.fetchmany(rows):
                yield block


#: ``"sqlite"`` for a sqlite3 connection, else ``"postgresql"``: the storage's own test.
dialect_of = summary.dialect
