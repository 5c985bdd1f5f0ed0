"""ResultsTable: rows written chunk by chunk (COPY on PostgreSQL, INSERTs elsewhere) read back
exactly, and a new try replacing the task instance's rows."""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
from airflow_provider_voxsms.storage.results import ResultsTable, read_outcomes

KEY = ("dag", "manual__2026-12-02T03:00:00+00:00", "send", 3)


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
        }
    )
    return rows[OUTCOME_COLUMNS]


def test_awkward_values_round_trip_exactly(voxsms_db):
    """Quotes, commas, newlines, non-ASCII, an empty text (not NULL), NULLs and big ints."""
    awkward = pd.DataFrame(
        [
            [None, "", "invalid", None, None, "empty", None, None],
            ["447700900001", 'a "quoted", comma\nand line', "failed", None, 509, "блок, 号码", None, None],
            ["447700900002", "+44 7700 900002", "deferred", None, None, "outside", "Europe/London", "2026-12-02T09:00:00+00:00"],
            ["447700900003", "\\", "accepted", 9_007_199_254_740_993, None, None, None, None],
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
    other = ResultsTable(voxsms_db, "voxsms_results", (*KEY[:3], 4))
    with other:
        other.write(frame(7))
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as retry:
        retry.write(frame(10))
    assert len(read_outcomes(retry.location())) == 10, "the earlier try's rows are gone"
    assert len(read_outcomes(other.location())) == 7, "another map index keeps its rows"
    accepted = read_outcomes({**retry.location(), "outcomes": ["failed"]})
    assert accepted.empty
