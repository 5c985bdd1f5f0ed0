"""Recipients read in chunks from a SQL query or from CSV / Parquet files, never all at once.

A campaign of millions must not pass through XCom or sit in one DataFrame: the operator reads
its recipients itself, ``chunk_rows`` at a time, and prepares and sends each chunk before it
reads the next. PostgreSQL (psycopg2 or psycopg 3) is read with a server-side cursor declared
``WITH HOLD`` and committed at once: the rows stay in the database until fetched, and no
transaction stays open while the campaign sends (an open snapshot would keep every dead row
version of the send ledger's lease, slowing each claim, and trip an
``idle_in_transaction_session_timeout``). Other drivers fetch ``chunk_rows`` at a time from an
ordinary cursor (a SQLite file is switched to WAL journal mode, so the send ledger and the
results can be written to it while it is read). Files are opened through Airflow's object
storage (``ObjectStoragePath``), so ``s3://``, ``gs://`` and local paths read alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress

import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.storage.sql import db_api_hook

DEFAULT_CHUNK_ROWS = 100_000
FILE_SUFFIXES = (".csv", ".parquet", ".pq")
_CURSOR_NAME = "voxsms_recipients"


def recipient_chunks(
    *,
    sql: str | None = None,
    conn_id: str | None = None,
    path: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Yield the rows of ``sql`` on ``conn_id``, or of the file(s) at ``path``, as DataFrames of
    at most ``chunk_rows`` rows. ``path`` is a CSV or Parquet file or a directory of them (read
    in name order); CSV cells are read as text (an empty cell is ``""``). A source with no rows
    yields one empty frame, so a reader always learns its columns."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if (sql is None) == (path is None):
        raise ValueError("give exactly one of sql (with conn_id) or path")
    if sql is not None:
        if not conn_id:
            raise ValueError("sql needs conn_id: the connection the query runs on")
        return _sql_chunks(sql, conn_id, chunk_rows)
    return _file_chunks(path, chunk_rows)


def _sql_chunks(sql: str, conn_id: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    hook = db_api_hook(conn_id)
    with closing(hook.get_conn()) as conn:
        if type(conn).__module__.startswith("sqlite3"):
            # An open read would lock the file against the ledger's and the results' commits
            # (often the same file); in WAL mode readers and a writer go together.
            conn.execute("PRAGMA journal_mode=WAL")
        try:  # server-side, outliving its transaction: psycopg2, psycopg 3
            cursor = conn.cursor(name=_CURSOR_NAME, withhold=True)
            server_side = True
        except TypeError:  # sqlite3 and most drivers: fetchmany bounds what is held
            cursor, server_side = conn.cursor(), False
        with _closed_quietly(cursor):
            try:
                cursor.execute(sql)
                if server_side:
                    conn.commit()  # the held cursor's rows are the query's: end the snapshot
            except Exception as err:  # the query's own error: no retry can fix it
                raise RecipientsError(
                    f"recipients_sql failed on connection {conn_id!r}: {err}. It must be one "
                    "SELECT (or a statement that returns rows); nothing was sent."
                ) from err
            yielded = False
            while rows := cursor.fetchmany(chunk_rows):
                if server_side:
                    conn.commit()  # nothing open while the chunk is sent
                yield pd.DataFrame.from_records(rows, columns=_columns(cursor))
                yielded = True
            if not yielded:
                yield pd.DataFrame(columns=_columns(cursor))
        with suppress(Exception):  # a read-only transaction: nothing to keep
            conn.rollback()


@contextmanager
def _closed_quietly(cursor) -> Iterator:
    """The cursor, closed after. A query that failed on the server took its server-side cursor
    with it; the CLOSE would then fail and hide the query's own error."""
    try:
        yield cursor
    finally:
        with suppress(Exception):
            cursor.close()


def _columns(cursor) -> list[str]:
    if cursor.description is None:
        raise RecipientsError(
            "recipients_sql returned no result set: it must be one SELECT (or a statement that "
            "returns rows); nothing was sent."
        )
    return [column[0] for column in cursor.description]


def _file_chunks(path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Chunks of ``chunk_rows`` rows across the files: small files (a shard written in many
    parts) are joined, so a campaign is not sent in many small pieces."""
    files = _files(path)
    pending: list[pd.DataFrame] = []
    held = 0
    yielded = False
    for file in files:
        for chunk in _read_file(file, chunk_rows):
            pending.append(chunk.reset_index(drop=True))
            held += len(chunk)
            if held >= chunk_rows:
                joined = pd.concat(pending, ignore_index=True)
                yield joined.iloc[:chunk_rows].reset_index(drop=True)
                rest = joined.iloc[chunk_rows:].reset_index(drop=True)
                pending, held = ([rest], len(rest)) if len(rest) else ([], 0)
                yielded = True
    if held:
        yield pd.concat(pending, ignore_index=True)
    elif not yielded:  # empty files: their columns, no rows
        yield next(_read_file(files[0], chunk_rows), pd.DataFrame())


def _files(path: str) -> list:
    from airflow.sdk import ObjectStoragePath

    where = ObjectStoragePath(path if "://" in path else f"file://{_absolute(path)}")
    if where.is_dir():
        files = sorted(
            (f for f in where.iterdir() if f.is_file() and f.suffix.lower() in FILE_SUFFIXES),
            key=lambda f: f.name,
        )
        if not files:
            raise RecipientsError(
                f"recipients_path {path!r} is a directory without CSV or Parquet files "
                f"({', '.join(FILE_SUFFIXES)}); nothing was sent."
            )
        return files
    if not where.exists():
        raise RecipientsError(f"recipients_path {path!r} does not exist; nothing was sent.")
    if where.suffix.lower() not in FILE_SUFFIXES:
        raise RecipientsError(
            f"recipients_path {path!r} is neither CSV nor Parquet (by its suffix: "
            f"{', '.join(FILE_SUFFIXES)}); nothing was sent."
        )
    return [where]


def _absolute(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


def _read_file(file, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with file.open("rb") as handle:
        if file.suffix.lower() == ".csv":
            reader = pd.read_csv(handle, dtype=str, keep_default_na=False, chunksize=chunk_rows)
            with reader:
                yield from reader
            return
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(handle)
        if parquet.metadata.num_rows == 0:
            yield parquet.schema_arrow.empty_table().to_pandas()
            return
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
