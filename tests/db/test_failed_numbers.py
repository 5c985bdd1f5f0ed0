"""log_failed_numbers on a real SQLite file and a real PostgreSQL server (tests/pg_server.py)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.storage import log_failed_numbers, schema

CONN_ID = "voxsms_db"
TI = {"dag_id": "sms_campaign", "run_id": "manual__2026-01-01", "task_id": "send"}


@dataclass
class Db:
    kind: str
    table: str

    def records(self, sql: str) -> list[tuple]:
        from airflow.sdk import BaseHook

        hook = BaseHook.get_connection(CONN_ID).get_hook()
        return [tuple(row) for row in hook.get_records(sql.format(table=self.table))]

    def rows(self, **where: object) -> list[tuple]:
        """(destination_number, error_code, error_description, stage) of the matching rows."""
        cond = " AND ".join(
            f"{k} = {v}" if isinstance(v, int) else f"{k} = '{v}'" for k, v in where.items()
        )
        return self.records(
            "SELECT destination_number, error_code, error_description, stage FROM {table}"
            + (f" WHERE {cond}" if cond else "")
            + " ORDER BY destination_number"
        )

    def count(self) -> int:
        return self.records("SELECT COUNT(*) FROM {table}")[0][0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path, monkeypatch) -> Db:
    """An Airflow connection `voxsms_db` (from an env var) and a table name not yet used."""
    if request.param == "sqlite":
        pytest.importorskip(
            "airflow.providers.sqlite", reason="apache-airflow-providers-sqlite is not installed"
        )
        # The sqlite provider wants three slashes before an absolute path's first component.
        uri = "sqlite://" + str(tmp_path / "voxsms.db")
    else:
        uri = request.getfixturevalue("postgres_uri")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", uri)
    return Db(request.param, f"failed_{uuid.uuid4().hex[:12]}")


def frame(numbers: list[str], codes: list, stage: str = "api") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "destination_number": numbers,
            "error_code": codes,
            "error_description": [f"error for {n}" for n in numbers],
            "stage": stage,
        }
    )


def log(db: Db, failed: pd.DataFrame, **overrides) -> int:
    return log_failed_numbers(failed, conn_id=CONN_ID, table=db.table, **{**TI, **overrides})


def test_creates_table_and_reads_back_types(db):
    with pytest.raises(Exception):  # noqa: B017 - the driver's own "no such table" error
        db.count()
    failed = pd.concat(
        [
            frame(["+4915100000001", "+4915100000002"], [21_000_001, 400], stage="api"),
            frame(["0049 garbage", ""], [np.nan, None], stage="validation"),
        ],
        ignore_index=True,
    )
    assert log(db, failed) == 4

    assert db.rows() == [
        ("", None, "error for ", "validation"),
        ("+4915100000001", 21_000_001, "error for +4915100000001", "api"),
        ("+4915100000002", 400, "error for +4915100000002", "api"),
        ("0049 garbage", None, "error for 0049 garbage", "validation"),
    ]
    dag_id, run_id, task_id, map_index, logged_at = db.records(
        "SELECT dag_id, run_id, task_id, map_index, logged_at FROM {table}"
    )[0]
    assert (dag_id, run_id, task_id, map_index) == (*TI.values(), -1)
    assert isinstance(map_index, int)
    # PostgreSQL hands back a datetime, SQLite the ISO text it stored.
    stamp = logged_at if isinstance(logged_at, datetime) else datetime.fromisoformat(logged_at)
    assert abs((datetime.now(UTC).replace(tzinfo=None) - stamp).total_seconds()) < 60


def test_existing_table_is_reused(db):
    log(db, frame(["+1"], [1]))
    log(db, frame(["+2"], [2]), run_id="other_run")
    assert db.count() == 2


def test_rerun_replaces_that_task_instance_only(db):
    log(db, frame(["+1", "+2", "+3"], [1, 2, 3]))
    log(db, frame(["+9"], [9]), run_id="other_run")
    log(db, frame(["+8"], [8]), task_id="other_task")
    log(db, frame(["+7"], [7]), map_index=0)
    log(db, frame(["+6"], [6]), dag_id="other_dag")

    assert log(db, frame(["+2", "+4"], [20, 40])) == 2

    assert db.rows(**TI, map_index=-1) == [
        ("+2", 20, "error for +2", "api"),
        ("+4", 40, "error for +4", "api"),
    ]
    assert db.rows(run_id="other_run") == [("+9", 9, "error for +9", "api")]
    assert db.rows(task_id="other_task") == [("+8", 8, "error for +8", "api")]
    assert db.rows(map_index=0) == [("+7", 7, "error for +7", "api")]
    assert db.rows(dag_id="other_dag") == [("+6", 6, "error for +6", "api")]


def test_rerun_with_no_failures_clears_old_rows(db):
    log(db, frame(["+1", "+2"], [1, 2]))
    log(db, frame(["+9"], [9]), map_index=3)
    assert log(db, frame([], [])) == 0
    assert db.rows() == [("+9", 9, "error for +9", "api")]


def test_failed_insert_keeps_previous_rows(db, monkeypatch):
    log(db, frame(["+1", "+2"], [1, 2]))

    def one_batch_then_fail(rows, size):
        yield [next(rows)]
        raise RuntimeError("connection lost mid-insert")

    monkeypatch.setattr(schema, "_batches", one_batch_then_fail)
    with pytest.raises(RuntimeError, match="mid-insert"):
        log(db, frame(["+3", "+4", "+5"], [3, 4, 5]))
    assert db.rows() == [("+1", 1, "error for +1", "api"), ("+2", 2, "error for +2", "api")]


def test_100k_rows_round_trip(db):
    n = 100_000
    idx = np.arange(n)
    failed = pd.DataFrame(
        {
            "destination_number": [f"+4915{i:09d}" for i in range(n)],
            "error_code": np.where(idx % 4 == 0, np.nan, 400 + idx % 7),
            "error_description": "Invalid destination number",
            "stage": np.where(idx % 4 == 0, "validation", "api"),
        }
    )
    started = time.perf_counter()
    assert log(db, failed) == n
    elapsed = time.perf_counter() - started
    print(f"\n{db.kind}: {n} rows in {elapsed:.2f} s = {n / elapsed:,.0f} rows/s")

    assert db.records("SELECT COUNT(*), COUNT(error_code) FROM {table}") == [(n, n - n // 4)]

    assert log(db, failed.head(10)) == 10  # the re-run replaces all 100k
    assert db.count() == 10


def test_missing_columns_are_named():
    bad = pd.DataFrame({"destination_number": ["+1"], "stage": ["api"]})
    with pytest.raises(ValueError, match="missing columns: error_code, error_description"):
        log_failed_numbers(bad, conn_id="unused", **TI)


@pytest.mark.parametrize(
    "table",
    ["x; DROP TABLE y", "failed numbers", "public.failed", "1failed", "", '"t"', "t" * 49],
)
def test_table_must_be_plain_identifier(table):
    with pytest.raises(ValueError, match="plain identifier"):
        log_failed_numbers(frame(["+1"], [1]), conn_id="unused", table=table, **TI)


@pytest.mark.parametrize(
    ("codes", "match"),
    [(["abc"], "error_code must hold integers"), ([1.5], "error_code must hold integers")],
)
def test_bad_error_codes(codes, match):
    with pytest.raises(ValueError, match=match):
        log_failed_numbers(frame(["+1"], codes), conn_id="unused", **TI)


@pytest.mark.parametrize("stage", ["not_sent", "delivery"])
def test_every_stage_the_operators_report_is_logged(db, stage):
    """A stopped run reports ``not_sent`` numbers, delivery reports ``delivery``."""
    assert log(db, frame(["+4915100000001"], [127], stage=stage)) == 1
    assert db.rows() == [("+4915100000001", 127, "error for +4915100000001", stage)]


def test_unknown_stage():
    with pytest.raises(ValueError, match=r"stage must be one of .* got: sending"):
        log_failed_numbers(frame(["+1"], [1], stage="sending"), conn_id="unused", **TI)


def test_not_a_sql_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", "smtp://mail.example.test:25")
    with pytest.raises(TypeError, match="not a common-sql DbApiHook"):
        log_failed_numbers(frame(["+1"], [1]), conn_id="not_sql", **TI)


def test_the_number_as_written_is_stored_and_an_older_table_gets_its_column(db):
    """A table created before ``input_number`` existed is given the column on the next write."""
    from airflow_provider_voxsms.storage.sql import db_api_hook

    db_api_hook(CONN_ID).run(
        f"CREATE TABLE {db.table} (dag_id VARCHAR(250) NOT NULL, run_id VARCHAR(250) NOT NULL, "
        "task_id VARCHAR(250) NOT NULL, map_index INTEGER NOT NULL, destination_number TEXT, "
        "error_code BIGINT, error_description TEXT, stage VARCHAR(16) NOT NULL, "
        "logged_at TIMESTAMP NOT NULL)"
    )
    failed = frame(["447443332212"], [509]).assign(input_number=["+44 7443 332212"])
    assert log(db, failed) == 1
    assert db.records("SELECT destination_number, input_number FROM {table}") == [
        ("447443332212", "+44 7443 332212")
    ]
