"""recipient_chunks: rows from a query (SQLite, PostgreSQL) or from CSV / Parquet files,
in chunks of at most ``chunk_rows``, with clear errors for sources that cannot work."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.storage.source import recipient_chunks
from airflow_provider_voxsms.storage.sql import db_api_hook

PHONES = [f"44770090{i:04d}" for i in range(25)]


def seed(conn_id: str) -> None:
    hook = db_api_hook(conn_id)
    hook.run("DROP TABLE IF EXISTS source_rows")
    hook.run("CREATE TABLE source_rows (id INTEGER, phone TEXT, name TEXT)")
    hook.insert_rows(
        "source_rows", [(i, p, f"n{i}") for i, p in enumerate(PHONES)], ["id", "phone", "name"]
    )


def test_a_query_is_read_in_chunks_with_its_column_names(voxsms_db):
    seed(voxsms_db)
    chunks = list(
        recipient_chunks(
            sql="SELECT phone, name FROM source_rows ORDER BY id", conn_id=voxsms_db, chunk_rows=10
        )
    )
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert all(list(c.columns) == ["phone", "name"] for c in chunks)
    assert pd.concat(chunks)["phone"].tolist() == PHONES


@pytest.fixture
def postgres_source(voxsms_db) -> str:
    """``voxsms_db`` seeded, on PostgreSQL only (server-side cursors are PostgreSQL's)."""
    if db_api_hook(voxsms_db).conn_type != "postgres":
        pytest.skip("server-side cursors are PostgreSQL's")
    seed(voxsms_db)
    return voxsms_db


def test_postgresql_is_read_through_a_server_side_cursor(postgres_source):
    """The query's rows stay in the server until fetched: a named cursor is open meanwhile."""
    sql = (
        "SELECT phone, (SELECT count(*) FROM pg_cursors WHERE name = 'voxsms_recipients') AS open"
        " FROM source_rows"
    )
    first = next(recipient_chunks(sql=sql, conn_id=postgres_source, chunk_rows=5))
    assert set(first["open"]) == {1}


def test_postgresql_holds_no_transaction_open_while_a_chunk_is_sent(postgres_source):
    """Between chunks the reader is idle with no snapshot: an open one would keep every dead row
    version of the send ledger's lease (each claim slows down) and trip an
    ``idle_in_transaction_session_timeout``; the held cursor still yields every row."""
    hook = db_api_hook(postgres_source)
    others = (
        "SELECT state, backend_xmin IS NOT NULL FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
    )
    chunks = recipient_chunks(
        sql="SELECT phone FROM source_rows ORDER BY id", conn_id=postgres_source, chunk_rows=10
    )
    phones, seen = [], []
    for chunk in chunks:
        phones += chunk["phone"].tolist()
        seen.append(set(hook.get_records(others)))  # the reader, and any connection left idle
    assert seen == [{("idle", False)}] * 3
    assert phones == PHONES


def test_a_query_that_fails_while_it_runs_is_refused_before_any_chunk(postgres_source):
    """A held cursor runs its query at the commit that follows it: an error there (here a
    division by zero) is the query's, reported as such, not a driver error mid-campaign."""
    chunks = recipient_chunks(
        sql="SELECT 1 / (id - id) AS phone FROM source_rows", conn_id=postgres_source
    )
    with pytest.raises(RecipientsError, match=r"recipients_sql failed .*division by zero"):
        next(chunks)


def test_an_empty_result_yields_one_empty_chunk_with_the_columns(voxsms_db):
    seed(voxsms_db)
    (chunk,) = recipient_chunks(sql="SELECT phone FROM source_rows WHERE 1 = 0", conn_id=voxsms_db)
    assert chunk.empty and list(chunk.columns) == ["phone"]


def test_a_statement_without_rows_is_refused(voxsms_db):
    seed(voxsms_db)
    with pytest.raises(RecipientsError, match="must be one SELECT"):
        list(recipient_chunks(sql="UPDATE source_rows SET name = 'x'", conn_id=voxsms_db))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_files_are_read_in_chunks_and_csv_cells_stay_text(tmp_path, suffix):
    frame = pd.DataFrame(
        {"phone": ["007700900001", "", "+44 7700 900002"], "code": ["01", "", "3"]}
    )
    path = tmp_path / f"r{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    chunks = list(recipient_chunks(path=f"file://{path}", chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    assert pd.concat(chunks, ignore_index=True).equals(frame), "leading zeros and blanks kept"


def test_a_directory_is_read_file_by_file_in_name_order(tmp_path):
    pd.DataFrame({"phone": ["b1", "b2"]}).to_parquet(tmp_path / "part-1.parquet", index=False)
    pd.DataFrame({"phone": ["a1"]}).to_csv(tmp_path / "part-0.csv", index=False)
    (tmp_path / "README.txt").write_text("not data")
    rows = pd.concat(recipient_chunks(path=str(tmp_path), chunk_rows=10))["phone"].tolist()
    assert rows == ["a1", "b1", "b2"]


def test_empty_files_yield_their_columns(tmp_path):
    pd.DataFrame({"phone": []}, dtype=str).to_parquet(tmp_path / "r.parquet", index=False)
    (chunk,) = recipient_chunks(path=str(tmp_path / "r.parquet"))
    assert chunk.empty and list(chunk.columns) == ["phone"]
    (tmp_path / "h.csv").write_text("phone\n")
    (chunk,) = recipient_chunks(path=str(tmp_path / "h.csv"))
    assert chunk.empty and list(chunk.columns) == ["phone"]


@pytest.mark.parametrize(
    ("name", "match"),
    [("missing.csv", "does not exist"), ("data.json", "neither CSV nor Parquet")],
)
def test_a_path_that_cannot_be_read_is_refused_clearly(tmp_path, name, match):
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(RecipientsError, match=match):
        list(recipient_chunks(path=str(tmp_path / name)))


def test_a_directory_without_data_files_is_refused(tmp_path):
    with pytest.raises(RecipientsError, match="without CSV or Parquet files"):
        list(recipient_chunks(path=str(tmp_path)))


def test_small_files_are_joined_into_full_chunks(tmp_path):
    """A shard written in many small parts is read in chunks of ``chunk_rows`` all the same."""
    for part in range(7):
        rows = [f"p{part}r{i}" for i in range(3)]
        pd.DataFrame({"phone": rows}).to_parquet(tmp_path / f"part-{part}.parquet", index=False)
    chunks = list(recipient_chunks(path=str(tmp_path), chunk_rows=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 1]
    assert pd.concat(chunks)["phone"].tolist() == [f"p{p}r{i}" for p in range(7) for i in range(3)]


# -- null markers: the same rule whatever the source ---------------------------------------------

MARKERS = ["", "NULL", "null", "None", "NA", "N/A", "NaN", "\\N", " n/a ", "<NA>"]


@pytest.mark.parametrize("source", ["sql", "csv", "parquet"])
def test_null_markers_in_a_placeholder_column_make_invalid_rows_from_every_source(
    source, voxsms_db, tmp_path
):
    """A CSV read as text keeps "NULL" or "\\N" as strings, a table or a Parquet file may hold
    them as text: each is an empty placeholder, as a real NULL is (the last row)."""
    from airflow_provider_voxsms.sms.recipients import prepare_recipients

    names = [*MARKERS, "Ann", None]
    frame = pd.DataFrame({"phone": PHONES[: len(names)], "name": names})
    if source == "sql":
        hook = db_api_hook(voxsms_db)
        hook.run("DROP TABLE IF EXISTS marker_rows")
        hook.run("CREATE TABLE marker_rows (id INTEGER, phone TEXT, name TEXT)")
        rows = [(i, p, n) for i, (p, n) in enumerate(zip(frame["phone"], names, strict=True))]
        hook.insert_rows("marker_rows", rows, ["id", "phone", "name"])
        kwargs = {"sql": "SELECT phone, name FROM marker_rows ORDER BY id", "conn_id": voxsms_db}
    elif source == "csv":
        frame.to_csv(tmp_path / "r.csv", index=False)
        kwargs = {"path": str(tmp_path / "r.csv")}
    else:
        frame.to_parquet(tmp_path / "r.parquet", index=False)
        kwargs = {"path": str(tmp_path / "r.parquet")}
    (chunk,) = recipient_chunks(chunk_rows=100, **kwargs)
    prepared = prepare_recipients(chunk, text="Hi {name}")
    assert prepared.valid["text"].tolist() == ["Hi Ann"]
    assert prepared.invalid["reason"].tolist() == ["placeholder {name} is empty"] * 11
