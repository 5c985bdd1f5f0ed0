"""ResultsTable: rows written chunk by chunk (COPY on PostgreSQL, INSERTs elsewhere) read back
exactly, and a new try replacing the task instance's rows."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
from airflow_provider_voxsms.storage.key import CampaignKey
from airflow_provider_voxsms.storage.results import ResultsTable, read_outcomes
from airflow_provider_voxsms.storage.sql import db_api_hook

KEY = CampaignKey(
    "dag", "send", 3, "2026-12-02T00:00:00+00:00", "manual__2026-12-02T03:00:00+00:00"
)


def frame(n: int, first: int = 0) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "destination_number": [str(447700900000 + first + i) for i in range(n)],
            "input_number": [f"+{447700900000 + first + i}" for i in range(n)],
            "outcome": "accepted",
            "message_id": [first + i + 1 for i in range(n)],
            "error_code": None,
            "reason": None,
            "time_zone": None,
            "next_window_start": None,
            "variant": None,
        }
    )
    return rows[OUTCOME_COLUMNS]


def test_awkward_values_round_trip_exactly(voxsms_db):
    """Quotes, commas, newlines, non-ASCII, an empty text (not NULL), NULLs and big ints."""
    awkward = pd.DataFrame(
        [
            [None, "", "invalid", None, None, "empty", None, None, None],
            ["447700900001", 'a "quoted", comma\nand line', "failed", None, 509, "блок, 号码", None, None, "B"],
            ["447700900002", "+44 7700 900002", "deferred", None, None, "outside", "Europe/London", "2026-12-02T09:00:00+00:00", "A"],
            ["447700900003", "\\", "accepted", 9_007_199_254_740_993, None, None, None, None, "holdout"],
        ],
        columns=OUTCOME_COLUMNS,
    )  # fmt: skip
    awkward["message_id"] = pd.array([None, None, None, 9_007_199_254_740_993], dtype="Int64")
    awkward["error_code"] = pd.array([None, 509, None, None], dtype="Int64")
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as table:
        table.write(awkward)
    assert plain(read_outcomes(table.location())) == plain(awkward)


def plain(rows: pd.DataFrame) -> list[dict]:
    """Rows as Python values, None for every kind of missing."""
    return [
        {k: None if pd.isna(v) else (int(v) if k in ("message_id", "error_code") else v)
         for k, v in row.items()}
        for row in rows.astype(object).to_dict("records")
    ]  # fmt: skip


def test_chunks_append_and_a_new_try_replaces_the_task_instances_rows(voxsms_db):
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as table:
        table.write(frame(300))
        table.write(frame(200, first=300))
    assert table.rows == 500 and len(read_outcomes(table.location())) == 500
    other = ResultsTable(voxsms_db, "voxsms_results", replace(KEY, map_index=4))
    with other:
        other.write(frame(7))
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as retry:
        retry.write(frame(10))
    assert len(read_outcomes(retry.location())) == 10, "the earlier try's rows are gone"
    assert len(read_outcomes(other.location())) == 7, "another map index keeps its rows"
    accepted = read_outcomes({**retry.location(), "outcomes": ["failed"]})
    assert accepted.empty


def test_a_campaign_owns_its_rows_across_runs_and_names_the_run_that_wrote_them(voxsms_db):
    """A run of the same campaign replaces the rows (stamped with its run id); the location in
    the XComs names the campaign, and reading it finds that campaign's rows only."""
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as first:
        first.write(frame(5))
    rerun = replace(KEY, run_id="backfill__2026-12-02T00:00:00+00:00")
    with ResultsTable(voxsms_db, "voxsms_results", rerun) as again:
        again.write(frame(3))
    next_day = replace(KEY, campaign_id="2026-12-03T00:00:00+00:00", run_id="scheduled__2")
    with ResultsTable(voxsms_db, "voxsms_results", next_day) as other:
        other.write(frame(4))
    where = again.location()
    assert (where["campaign_id"], where["run_id"]) == (KEY.campaign_id, rerun.run_id)
    assert len(read_outcomes(where)) == 3 and len(read_outcomes(other.location())) == 4
    runs = db_api_hook(voxsms_db).get_records(
        "SELECT DISTINCT run_id FROM voxsms_results_outcomes WHERE campaign_id = "
        f"'{KEY.campaign_id}'"
    )
    assert runs == [(rerun.run_id,)]


OLD_RESULTS = """CREATE TABLE voxsms_results_outcomes (dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL, task_id VARCHAR(250) NOT NULL, map_index INTEGER NOT NULL,
    destination_number VARCHAR(16), input_number TEXT, outcome VARCHAR(16) NOT NULL,
    message_id BIGINT, error_code BIGINT, reason TEXT, time_zone TEXT,
    next_window_start VARCHAR(40), recorded_at TIMESTAMP NOT NULL)"""


def test_a_table_made_before_campaigns_gets_the_column_and_old_locations_still_read(voxsms_db):
    hook = db_api_hook(voxsms_db)
    hook.run(OLD_RESULTS)
    hook.run(
        "CREATE INDEX ix_voxsms_results_outcomes_ti ON voxsms_results_outcomes "
        "(dag_id, run_id, task_id, map_index)"
    )
    old_run = "manual__2026-11-01T00:00:00+00:00"
    hook.insert_rows(
        "voxsms_results_outcomes",
        [("dag", old_run, "send", 3, "447700900001", "+447700900001", "accepted", 1, None,
          None, None, None, "2026-11-01 00:00:00")],
    )  # fmt: skip
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as table:
        table.write(frame(2))
    assert len(read_outcomes(table.location())) == 2
    old_location = {
        "conn_id": voxsms_db,
        "table": "voxsms_results_outcomes",
        "dag_id": "dag",
        "run_id": old_run,
        "task_id": "send",
        "map_index": 3,
        "outcomes": ["accepted"],
    }  # as an XCom pushed before the upgrade says it
    assert read_outcomes(old_location)["destination_number"].tolist() == ["447700900001"]
