"""Every recipient's outcome in a table, written chunk by chunk, instead of in XComs.

Airflow's metadata database holds XComs; a million-row XCom is a million-row blob that every
downstream task reads again. With ``results_conn_id`` the send writes one row per input row to
``<prefix>_outcomes`` on any common-sql connection (COPY on PostgreSQL, inserts of many rows
per statement elsewhere), and its XComs only say where the rows are. A campaign owns its rows
(:data:`~.key.CAMPAIGN_COLUMNS`; each row also names the run that wrote it): a try deletes
what earlier tries wrote, then writes as it goes, through a
:class:`~.writer.GroupedWriter`, so after a try that finished there is exactly one row per
input row.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import closing, suppress
from typing import Any

import pandas as pd

from airflow_provider_voxsms.errors import ResultsError
from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
from airflow_provider_voxsms.storage import summary
from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS, CampaignKey
from airflow_provider_voxsms.storage.schema import RESULTS
from airflow_provider_voxsms.storage.sql import (
    check_table_name,
    db_api_hook,
    sql_texts,
    transactional,
    utc_now_text,
    where,
)
from airflow_provider_voxsms.storage.writer import GroupedWriter

READ_ROWS = 50_000  # rows per block read by outcome_blocks
_ROWS_PER_INSERT = 500  # 14 columns: 7,000 parameters, within SQLite's and PostgreSQL's limits
_KEY = RESULTS.key  # every key column a row carries


def outcomes_table(prefix: str) -> str:
    """The outcomes table's name for a prefix (checked to be a plain identifier)."""
    table = f"{prefix}_outcomes"
    check_table_name(table)
    return table


class ResultsTable:
    """One campaign's rows of ``<prefix>_outcomes``: cleared on open, appended per chunk.

    Use it as a context manager; leaving commits every row written (and raises
    :class:`ResultsError` if a write failed). :meth:`location` says where the rows are.
    """

    def __init__(self, conn_id: str, prefix: str, key: CampaignKey) -> None:
        self.conn_id = conn_id
        self.table = outcomes_table(prefix)
        self.key = key
        self.rows = 0
        self._writer = GroupedWriter(
            conn_id, what="results table", error=ResultsError, after_failure="A retry writes "
            "the campaign's rows again."
        )  # fmt: skip
        self._last: Future | None = None

    @property
    def _owner(self) -> dict:
        """The campaign's key columns and the run writing its rows."""
        return dict(zip(_KEY, self.key.values(_KEY), strict=True))

    def location(self, outcomes: Sequence[str] | None = None, rows: int | None = None) -> dict:
        """Where this campaign's rows are: connection, table and key (and which
        ``outcomes``, how many ``rows``, when given)."""
        where_ = {"conn_id": self.conn_id, "table": self.table}
        where_.update(zip(_KEY, self.key.values(_KEY), strict=True))
        if outcomes is not None:
            where_["outcomes"] = list(outcomes)
        if rows is not None:
            where_["rows"] = rows
        return where_

    def __enter__(self) -> ResultsTable:
        hook = db_api_hook(self.conn_id)
        self._hook = hook
        with transactional(hook) as conn:
            RESULTS.ensure(conn, self.table)
            summary.ensure(conn)
            with closing(conn.cursor()) as cur:  # the rows and their counts go together
                cur.execute(
                    f"DELETE FROM {self.table} WHERE {where(hook, CAMPAIGN_COLUMNS)}",
                    self.key.values(CAMPAIGN_COLUMNS),
                )
                summary.forget(cur, hook.placeholder, self.table, self._owner)
                # reports' delivered per variant joined these rows: of rows no longer there
                summary.forget_joined(cur, hook.placeholder, self.table, self._owner)
            conn.commit()
        self._writer.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit the rows; after a try without error, store their counts
        (:mod:`.summary`): a try that failed part-way leaves none."""
        if exc is None:
            self._writer.close()
            summary.store(self._hook, self.table, self._owner, summary.SEND_KINDS)
        else:
            with suppress(ResultsError):  # the error in flight matters more
                self._writer.close()

    def write(self, frame: pd.DataFrame) -> None:
        """Queue ``frame`` (``OUTCOME_COLUMNS``) for the writer: through ``COPY`` where the
        driver has it (PostgreSQL's drivers), else in multi-row INSERTs. Waits for the chunk
        written before, so at most one chunk is in memory here; raises if that one failed."""
        if frame.empty:
            return
        if self._last is not None:
            self._wait(self._last)
        rows = self._table_rows(frame)
        self._last = self._writer.submit(lambda cur: self._insert(cur, rows), wait=False)
        self.rows += len(frame)

    def _wait(self, future: Future) -> None:
        try:
            future.result()
        except Exception as err:
            raise ResultsError(
                f"Writing the results table failed: {type(err).__name__}: {err}"
            ) from None

    def _table_rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows as the table holds them: key columns, outcome columns, the time."""
        key = dict(zip(_KEY, self.key.values(_KEY), strict=True))
        table = pd.concat([pd.DataFrame(key, index=frame.index), frame[OUTCOME_COLUMNS]], axis=1)
        table["message_id"] = pd.array(table["message_id"], dtype="Int64")
        table["error_code"] = pd.array(table["error_code"], dtype="Int64")
        table["recorded_at"] = utc_now_text(timespec="auto")
        return table

    def _insert(self, cur: Any, table: pd.DataFrame) -> None:
        if hasattr(cur, "copy_expert") or hasattr(cur, "copy"):  # psycopg2 / psycopg 3
            self._copy(cur, table)
        else:
            self._insert_many(cur, table)

    def _copy(self, cur: Any, table: pd.DataFrame) -> None:
        """PostgreSQL's COPY of the rows as CSV; ``\\N`` marks NULL, so an empty text stays
        an empty text."""
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, header=False, na_rep=r"\N")
        buffer.seek(0)
        names = ", ".join(table.columns)
        sql = rf"COPY {self.table} ({names}) FROM STDIN WITH (FORMAT csv, NULL '\N')"
        if hasattr(cur, "copy_expert"):
            cur.copy_expert(sql, buffer)
        else:
            with cur.copy(sql) as copy:
                copy.write(buffer.getvalue())

    def _insert_many(self, cur: Any, table: pd.DataFrame) -> None:
        texts = (
            "destination_number",
            "input_number",
            "reason",
            "time_zone",
            "next_window_start",
            "variant",
        )
        columns = [
            sql_texts(table[name])
            if name in texts
            else table[name].to_numpy(dtype=object, na_value=None)
            for name in table.columns
        ]
        rows = list(zip(*columns, strict=True))
        mark = self._hook.placeholder
        one_row = "(" + ", ".join([mark] * len(table.columns)) + ")"
        head = f"INSERT INTO {self.table} ({', '.join(table.columns)}) VALUES "
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[start : start + _ROWS_PER_INSERT]
            cur.execute(head + ", ".join([one_row] * len(part)), _flat(part))


def read_outcomes(location: dict, columns: Sequence[str] = OUTCOME_COLUMNS) -> pd.DataFrame:
    """The rows a :meth:`ResultsTable.location` points at (only its ``outcomes``, if it names
    them), as a DataFrame of ``columns``. A location written before campaigns existed (no
    ``campaign_id``) names the rows of its DAG run."""
    hook = db_api_hook(location["conn_id"])
    sql, params = _select(hook, location, columns)
    with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cur:
        cur.execute(sql, params)
        rows = pd.DataFrame(cur.fetchall(), columns=list(columns), dtype=object)
    for column in {"message_id", "error_code"} & set(rows.columns):  # exact, NULLs and all
        rows[column] = pd.array(rows[column].tolist(), dtype="Int64")
    return rows


def outcome_blocks(
    location: dict, columns: Sequence[str] = OUTCOME_COLUMNS, rows: int = READ_ROWS
) -> Iterator[list[tuple]]:
    """The rows :func:`read_outcomes` reads, as tuples of ``columns``, ``rows`` at a time:
    through a server-side cursor where the driver has one (PostgreSQL's), so neither this
    process nor its driver ever holds a million of them (a delivery report of a large
    campaign keeps only what it needs of each block)."""
    hook = db_api_hook(location["conn_id"])
    sql, params = _select(hook, location, columns)
    with closing(hook.get_conn()) as conn:
        try:  # psycopg2, psycopg 3: the rows stay on the server until fetched
            cursor = conn.cursor(name=f"voxsms_results_{uuid.uuid4().hex[:8]}")
        except TypeError:  # sqlite3 and most drivers: an ordinary cursor steps through them
            cursor = conn.cursor()
        with closing(cursor):
            cursor.execute(sql, params)
            while block := cursor.fetchmany(rows):
                yield block
        with suppress(Exception):  # a read: nothing to keep
            conn.rollback()


def _select(hook: Any, location: dict, columns: Sequence[str]) -> tuple[str, list[Any]]:
    """The SELECT of a location's rows, and its parameters."""
    table = location["table"]
    check_table_name(table)
    key = CAMPAIGN_COLUMNS if "campaign_id" in location else TASK_COLUMNS
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {where(hook, key)}"
    params: list[Any] = [location[column] for column in key]
    if outcomes := location.get("outcomes"):
        sql += f" AND outcome IN ({', '.join([hook.placeholder] * len(outcomes))})"
        params += list(outcomes)
    return sql, params


def is_location(value: Any) -> bool:
    """True for a dict that says where a send's rows are (or a summary that carries one)."""
    return isinstance(value, dict) and ("table" in value or isinstance(value.get("results"), dict))


def _flat(rows: list[tuple]) -> list:
    return [value for row in rows for value in row]
