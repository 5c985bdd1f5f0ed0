"""The counts a send and a delivery report store when they finish (storage.summary), on SQLite
and PostgreSQL: the campaign page answers the same from them as from its scan of the rows;
a new try replaces them, a try that fails leaves none; the failed numbers' first page and
their count read no more than the page (query plans)."""

from __future__ import annotations

from contextlib import closing

import pandas as pd
import pytest

from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
from airflow_provider_voxsms.storage import summary
from airflow_provider_voxsms.storage.delivery_status import (
    DeliveryStatusTable,
    log_delivery_status,
)
from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, CampaignKey
from airflow_provider_voxsms.storage.results import ResultsTable
from airflow_provider_voxsms.storage.schema import DELIVERY_STATUS, FAILED_OUTCOMES, RESULTS
from airflow_provider_voxsms.storage.sql import db_api_hook, index_probe
from airflow_provider_voxsms.ui import failed_rows, queries
from airflow_provider_voxsms.ui.campaign import CampaignRows, campaign_view
from airflow_provider_voxsms.ui.failed_rows import FAILED_STAGES, FailedFilter
from airflow_provider_voxsms.ui.tables import OwnedRows, dialect_of

KEY = CampaignKey("dag", "send", -1, "2026-12-07T00:00:00+00:00", "manual__1")
REPORT = {"dag_id": "dag", "run_id": "manual__1", "task_id": "delivery", "map_index": -1}
OUTCOMES = "voxsms_results_outcomes"
STATUSES = "sms_delivery_status"
FILTERS = [
    FailedFilter(),
    FailedFilter(stage="api"),
    FailedFilter(stage="validation"),
    FailedFilter(stage="delivery"),
    FailedFilter(code="509"),
    FailedFilter(code="expired"),
    FailedFilter(code="x1"),
    FailedFilter(number="0090"),
    FailedFilter(stage="capped"),
]


def send_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of every outcome, two countries and variants, several codes and reasons."""
    kinds = ["accepted"] * 6 + ["failed", "invalid", "not_sent", "duplicate", "capped", "expired"]
    rows = []
    for i in range(n):
        outcome = kinds[(i + seed) % len(kinds)]
        number = None if outcome == "invalid" and i % 2 else f"{(44, 33)[i % 2]}77009{i:05d}"
        code = {"failed": 509 + i % 2, "not_sent": 127}.get(outcome)
        reason = {"failed": f"blocked {i % 3}", "invalid": "not a number"}.get(outcome)
        rows.append(
            [number, f"+{number}" if number else "x", outcome, i + 1 if outcome == "accepted"
             else None, code, reason, None, None, "AB"[i % 2]]
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=OUTCOME_COLUMNS)
    frame["message_id"] = pd.array(frame["message_id"], dtype="Int64")
    frame["error_code"] = pd.array(frame["error_code"], dtype="Int64")
    return frame


def status_rows(n: int) -> pd.DataFrame:
    statuses = ["DELIVERED", "DELIVERED", "FAILED", "EXPIRED", "pending", "REJECTED"]
    return pd.DataFrame(
        {
            "message_id": range(1, n + 1),
            "destination_number": [f"{(44, 33)[i % 2]}77009{i:05d}" for i in range(n)],
            "delivery_status": [statuses[i % len(statuses)] for i in range(n)],
            "error_message": [None if i % 4 else "Absent subscriber" for i in range(n)],
            "fragments": 1,
            "cost": [0.0125 * (1 + i % 3) for i in range(n)],
            "processing_date": [f"2026-12-07 00:{i % 50:02d}:00" for i in range(n)],
        }
    )


def write_campaign(conn_id: str, n: int, seed: int = 0) -> None:
    with ResultsTable(conn_id, "voxsms_results", KEY) as table:
        for start in range(0, n, 40):  # several chunks
            table.write(send_rows(n, seed).iloc[start : start + 40])
    with DeliveryStatusTable(conn_id, REPORT) as table:
        table.write(status_rows(n // 2))


def page_rows(conn, use_summary: bool, dialect: str | None = None) -> CampaignRows:
    dialect = dialect or dialect_of(conn)
    mark = "?" if dialect == "sqlite" else "%s"
    key = {c: getattr(KEY, c) for c in CAMPAIGN_COLUMNS}
    outcomes = OwnedRows(conn, mark, dialect, OUTCOMES, key, use_summary)
    statuses = OwnedRows(conn, mark, dialect, STATUSES, REPORT, use_summary)
    return CampaignRows(None, outcomes, "table", None, statuses, "table")


def answers(rows: CampaignRows) -> dict:
    """The JSON, and every filter's count, first page and a page across the two tables."""
    found = {"view": campaign_view({"task_id": "send"}, rows)}
    for where in FILTERS:
        counts = failed_rows.failed_count(rows.outcomes, rows.statuses, where)
        found[repr(where)] = {
            "counts": counts,
            "first": failed_rows.failed_page(
                rows.outcomes, rows.statuses, where, offset=0, limit=50
            ),
            "across": failed_rows.failed_page(
                rows.outcomes, rows.statuses, where, offset=counts["send"] - 3, limit=7
            ),
        }
    return found


def both_ways(conn_id: str) -> tuple[dict, dict, CampaignRows]:
    with closing(db_api_hook(conn_id).get_conn()) as conn:
        stored = page_rows(conn, use_summary=True)
        with_summary = answers(stored)
        without = answers(page_rows(conn, use_summary=False))
    return with_summary, without, stored


def test_the_page_answers_the_same_from_the_stored_counts_as_from_the_rows(voxsms_db):
    write_campaign(voxsms_db, 500)
    with_summary, without, rows = both_ways(voxsms_db)
    assert rows.outcomes.stored() is not None and rows.statuses.stored() is not None
    assert with_summary == without
    view = with_summary["view"]
    assert sum(view["outcomes"].values()) == 500
    assert view["delivery"]["messages"] == 250 and view["delivery"]["over_time"]
    assert view["failed"] == with_summary[repr(FailedFilter())]["counts"]
    assert len(with_summary[repr(FailedFilter())]["first"]) == 50
    assert len(with_summary[repr(FailedFilter())]["across"]) == 7


def test_a_new_try_replaces_the_counts_and_a_try_that_fails_leaves_none(voxsms_db):
    write_campaign(voxsms_db, 300)
    write_campaign(voxsms_db, 120, seed=5)  # a retry, with other outcomes
    with_summary, without, rows = both_ways(voxsms_db)
    assert with_summary == without
    assert rows.outcomes.stored()["rows"] == [(120,)]
    assert rows.statuses.stored()["rows"] == [(60,)]

    with pytest.raises(RuntimeError), ResultsTable(voxsms_db, "voxsms_results", KEY) as table:
        table.write(send_rows(80))
        raise RuntimeError("the send stopped part-way")
    with pytest.raises(RuntimeError), DeliveryStatusTable(voxsms_db, REPORT) as table:
        table.write(status_rows(10))
        raise RuntimeError("the report stopped part-way")
    with_summary, without, rows = both_ways(voxsms_db)
    assert rows.outcomes.stored() is None and rows.statuses.stored() is None
    assert with_summary == without
    assert sum(with_summary["view"]["outcomes"].values()) == 80


def test_log_delivery_status_replaces_the_reports_counts(voxsms_db):
    write_campaign(voxsms_db, 200)
    log_delivery_status(status_rows(30), conn_id=voxsms_db, **REPORT)
    with_summary, without, rows = both_ways(voxsms_db)
    assert rows.statuses.stored()["rows"] == [(30,)]
    assert with_summary == without


def test_counts_of_no_rows_are_stored_too(voxsms_db):
    with ResultsTable(voxsms_db, "voxsms_results", KEY), DeliveryStatusTable(voxsms_db, REPORT):
        pass
    with_summary, without, rows = both_ways(voxsms_db)
    assert rows.outcomes.stored() == {
        "rows": [(0,)],
        "send": [],
        "status": [],
        "delivered": [],
        "variants": [],
    }
    assert with_summary == without


def write_report(
    conn_id: str, n: int, joined: bool = True, fail: bool = False, status: str | None = None
) -> None:
    """A report of the campaign's first ``n`` messages that followed its results table (and
    joins it when it stores its counts, with ``joined``); ``fail``: it stops part-way;
    ``status``: every message's."""
    location = ResultsTable(conn_id, "voxsms_results", KEY).location(rows=0)
    with DeliveryStatusTable(conn_id, REPORT, results=[location] if joined else []) as table:
        statuses = status_rows(n)
        table.write(statuses.assign(delivery_status=status) if status else statuses)
        if fail:
            raise RuntimeError("the report stopped part-way")


def delivered_by_variant(conn_id: str) -> tuple[dict | None, dict | None, list]:
    """Delivered per variant as stored, as joined now, and the stored rows of the join;
    checks that the page joins the tables only when there are none."""
    with closing(db_api_hook(conn_id).get_conn()) as conn:
        recording = Recording(conn)
        stored = page_rows(recording, True, dialect_of(conn))
        live = page_rows(conn, False)
        found = queries.delivered_by_variant(stored.outcomes, stored.statuses)
        joined = queries.delivered_by_variant(live.outcomes, live.statuses)
        kept = (stored.statuses.stored() or {}).get(summary.VARIANTS, [])
    joins = [sql for sql, _ in recording.statements if " JOIN " in sql]
    assert (joins == []) == bool(kept), "the page joins the tables only without a stored join"
    return found, joined, kept


def expected_by_variant(n_send: int, n_report: int, seed: int = 0) -> dict[str, int]:
    """Delivered per variant counted in Python from the rows written."""
    sent = send_rows(n_send, seed)
    statuses = status_rows(n_report)
    delivered = set(statuses.loc[statuses["delivery_status"] == "DELIVERED", "message_id"])
    accepted = sent[(sent["outcome"] == "accepted") & sent["message_id"].isin(delivered)]
    return accepted["variant"].value_counts().sort_index().to_dict()


def test_a_report_stores_delivered_per_variant_and_a_retry_replaces_it(voxsms_db):
    """The report's join of its rows with the send's, stored when it finishes, is the page's
    join (and the rows' own count); a retry replaces it, a failed try and a send that rewrites
    its rows leave none, and the page joins the tables itself again."""
    write_campaign(voxsms_db, 500)
    write_report(voxsms_db, 250)
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert found == joined == expected_by_variant(500, 250) and set(found) == {"A", "B"}
    assert len(kept) == 3  # the marker and the two variants'

    write_report(voxsms_db, 90)  # a retry of the report, or a poll again
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert found == joined == expected_by_variant(500, 90) and len(kept) == 3

    write_report(voxsms_db, 40, status="FAILED")  # none delivered: a stored answer too
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert found == joined == {} and kept == [(kept[0][0], None, 0)]

    with pytest.raises(RuntimeError):
        write_report(voxsms_db, 60, fail=True)
    assert delivered_by_variant(voxsms_db)[2] == []

    write_report(voxsms_db, 250)
    with ResultsTable(voxsms_db, "voxsms_results", KEY) as table:  # the send rewrites its rows
        table.write(send_rows(500, seed=4))
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert kept == [] and found == joined == expected_by_variant(500, 250, seed=4)


def test_a_report_that_did_not_join_leaves_the_page_its_own_join(voxsms_db):
    """A report fed by XCom, or whose results are on another connection, stores no join; nor
    does one of a send without variants (it costs the report no join)."""
    write_campaign(voxsms_db, 300)
    write_report(voxsms_db, 150, joined=False)
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert kept == [] and found == joined == expected_by_variant(300, 150)

    with ResultsTable(voxsms_db, "voxsms_results", KEY) as table:
        table.write(send_rows(300).assign(variant=None))
    write_report(voxsms_db, 150)
    found, joined, kept = delivered_by_variant(voxsms_db)
    assert kept == [] and found == joined == {}


def test_the_failed_outcomes_are_the_ones_the_index_holds():
    assert sorted(FAILED_STAGES) == list(FAILED_OUTCOMES)


def test_older_tables_get_the_failed_numbers_indexes(voxsms_db):
    """Tables made before the indexes get them on the next open (a probe each, then CREATE)."""
    hook = db_api_hook(voxsms_db)
    write_campaign(voxsms_db, 10)
    probes = {(OUTCOMES, "failed"): RESULTS, (STATUSES, "undelivered"): DELIVERY_STATUS}
    for table, name in probes:
        hook.run(f"DROP INDEX ix_{table}_{name}")
    write_campaign(voxsms_db, 10)
    with closing(hook.get_conn()) as conn:
        for (table, name), schema in probes.items():
            with closing(conn.cursor()) as cur:  # fails without the index
                cur.execute(index_probe(conn, table, name, schema.partial[name]))
                cur.fetchall()


class Recording:
    """A DB-API connection that records every statement its cursors run."""

    def __init__(self, conn) -> None:
        self.conn, self.statements = conn, []

    def cursor(self):
        cursor, statements = self.conn.cursor(), self.statements

        class Cursor:
            def __getattr__(self, name):
                return getattr(cursor, name)

            def execute(self, sql, params=()):
                statements.append((sql, tuple(params)))
                return cursor.execute(sql, params)

        return Cursor()

    def rollback(self):
        self.conn.rollback()


def plan(conn, sql: str, params: tuple) -> str:
    """The query plan, as one text (SQLite's or PostgreSQL's EXPLAIN)."""
    sqlite = dialect_of(conn) == "sqlite"
    with closing(conn.cursor()) as cur:
        cur.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql, params)
        return "\n".join(str(row[-1] if sqlite else row[0]) for row in cur.fetchall())


def test_the_failed_numbers_count_is_stored_and_the_first_page_reads_an_index(voxsms_db):
    """With the stored counts, the count runs no query on the rows, and the first page's
    queries walk the partial indexes in the page's order (no sort of the failed numbers).
    PostgreSQL is told to prefer indexes (on a table this small it would rightly read it
    whole) and given the statistics autovacuum keeps."""
    write_campaign(voxsms_db, 400, seed=3)
    with closing(db_api_hook(voxsms_db).get_conn()) as conn:
        if dialect_of(conn) == "postgresql":
            with closing(conn.cursor()) as cur:  # statistics, as autovacuum keeps them
                cur.execute(f"ANALYZE {OUTCOMES}")
                cur.execute(f"ANALYZE {STATUSES}")
                cur.execute("SET enable_seqscan = off")
                cur.execute("SET enable_bitmapscan = off")
        recording = Recording(conn)
        rows = page_rows(recording, use_summary=True, dialect=dialect_of(conn))
        counts = failed_rows.failed_count(rows.outcomes, rows.statuses, FailedFilter())
        on_rows = [s for s in recording.statements if summary.SUMMARY_TABLE not in s[0]]
        assert counts["send"] > 50 and counts["delivery"] > 0 and on_rows == []
        for where in (FailedFilter(), FailedFilter(stage="delivery")):
            del recording.statements[:]
            failed_rows.failed_page(rows.outcomes, rows.statuses, where, offset=0, limit=50)
            assert recording.statements
            for sql, params in recording.statements:
                found = plan(conn, sql, params)
                assert "_failed" in found or "_undelivered" in found, found
                assert "TEMP B-TREE" not in found and "Sort" not in found, found
