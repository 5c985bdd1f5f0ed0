"""The campaign page's SQL (ui.queries) over the provider's own table schemas on SQLite, and
the failed numbers as shown (ui.failed): counts, countries, variants, the delivery curve,
paging across the send's and the report's failures, filters, masking and the CSV."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest

from airflow_provider_voxsms.storage.schema import DELIVERY_STATUS, RESULTS
from airflow_provider_voxsms.ui import failed, failed_rows, queries
from airflow_provider_voxsms.ui.failed_rows import FailedFilter
from airflow_provider_voxsms.ui.tables import OwnedRows

CAMPAIGN = {"dag_id": "d", "task_id": "send", "map_index": -1, "campaign_id": "c1"}
REPORT = {"dag_id": "d", "run_id": "r1", "task_id": "delivery", "map_index": -1}
# (number, outcome, message id, error code, reason, variant)
OUTCOMES = [
    ("447700900001", "accepted", 1, None, None, "A"),
    ("447700900002", "accepted", 2, None, None, "B"),
    ("447700900003", "accepted", 3, None, None, "A"),
    ("12015550123", "accepted", 4, None, None, "B"),
    ("33612345678", "failed", None, 509, "A2P SMS disabled", "A"),
    ("447700900004", "failed", None, 509, "A2P SMS disabled", "B"),
    (None, "invalid", None, None, "empty", None),
    ("447700900001", "duplicate", None, None, "same number", "A"),
    ("447700900005", "not_sent", None, 127, "no money", "A"),
]
# (message id, number, status, error, minutes after sending)
STATUSES = [
    (1, "447700900001", "DELIVERED", None, 0),
    (2, "447700900002", "FAILED", "Absent subscriber", 1),
    (3, "447700900003", "DELIVERED", None, 3),
    (4, "12015550123", "pending", None, None),
]


@pytest.fixture
def rows() -> tuple[OwnedRows, OwnedRows]:
    conn = sqlite3.connect(":memory:")
    for statement in RESULTS.create("res") + DELIVERY_STATUS.create("st"):
        conn.execute(statement)
    for number, outcome, mid, code, reason, variant in OUTCOMES:
        conn.execute(
            "INSERT INTO res (dag_id, run_id, task_id, map_index, campaign_id, "
            "destination_number, input_number, outcome, message_id, error_code, reason, "
            "variant, recorded_at) VALUES ('d', 'r1', 'send', -1, 'c1', ?, ?, ?, ?, ?, ?, ?, "
            "'2026-01-01 10:00:00')",
            (number, number and "+" + number, outcome, mid, code, reason, variant),
        )
    # another campaign's rows must never count
    conn.execute(
        "INSERT INTO res (dag_id, run_id, task_id, map_index, campaign_id, outcome, recorded_at)"
        " VALUES ('d', 'r0', 'send', -1, 'c0', 'failed', '2026-01-01 09:00:00')"
    )
    for mid, number, status, error, minutes in STATUSES:
        checked = None if minutes is None else f"2026-01-01 10:{minutes:02d}:30"
        conn.execute(
            "INSERT INTO st VALUES ('d', 'r1', 'delivery', -1, ?, ?, ?, ?, 1, 0.03, "
            "'2026-01-01 10:00:00', ?)",
            (mid, number, status, error, checked or "2026-01-01 11:00:00"),
        )
    return (
        OwnedRows(conn, "?", "sqlite", "res", CAMPAIGN),
        OwnedRows(conn, "?", "sqlite", "st", REPORT),
    )


def test_outcomes_reasons_countries_and_variants_are_counted_for_the_campaign_only(rows):
    outcomes, statuses = rows
    groups = queries.send_groups(outcomes)
    assert groups.outcome_counts() == {
        "accepted": 4,
        "failed": 2,
        "invalid": 1,
        "duplicate": 1,
        "not_sent": 1,
    }
    assert groups.failed() == 4
    reasons = groups.reasons()
    assert reasons["failed"] == [{"error_code": 509, "reason": "A2P SMS disabled", "count": 2}]
    assert reasons["not_sent"] == [{"error_code": 127, "reason": "no money", "count": 1}]
    delivered = queries.delivered_by_country(statuses)
    assert delivered == {"44": 2}
    countries = {c["country_code"]: c for c in groups.countries(delivered)}
    assert countries["44"] == {
        "country_code": "44",
        "recipients": 6,
        "accepted": 3,
        "failed": 2,
        "delivered": 2,
    }
    assert (countries["1"]["accepted"], countries["33"]["failed"]) == (1, 1)
    assert countries["none"]["recipients"] == 1  # the invalid row has no number
    assert groups.variants(queries.delivered_by_variant(outcomes, statuses)) == [
        {"variant": "A", "recipients": 4, "accepted": 2, "delivered": 2},
        {"variant": "B", "recipients": 3, "accepted": 2, "delivered": 0},
    ]


def test_statuses_and_the_share_final_by_minute(rows):
    _, statuses = rows
    groups = queries.status_groups(statuses)
    assert groups.counts() == {
        "statuses": {"DELIVERED": 2, "FAILED": 1, "pending": 1},
        "fragments": 4,
        "cost": 0.12,
    }
    assert groups.undelivered() == 1
    assert groups.final_by_minute() == [
        {"minute": 0, "final": 1, "share": 0.25},
        {"minute": 1, "final": 2, "share": 0.5},
        {"minute": 3, "final": 3, "share": 0.75},
    ]


def test_failed_numbers_page_across_the_send_and_the_report_in_one_order(rows):
    outcomes, statuses = rows
    everything = list(failed_rows.failed_blocks(outcomes, statuses, FailedFilter()))
    assert [r["stage"] for r in everything] == ["api", "api", "validation", "not_sent", "delivery"]
    assert failed_rows.failed_count(outcomes, statuses, FailedFilter()) == {
        "send": 4,
        "delivery": 1,
    }
    paged = [
        row
        for offset in range(0, 5, 2)
        for row in failed_rows.failed_page(
            outcomes, statuses, FailedFilter(), offset=offset, limit=2
        )
    ]
    assert paged == everything
    assert everything[-1] == {
        "stage": "delivery",
        "destination_number": "447700900002",
        "input_number": "447700900002",
        "error_code": None,
        "description": "FAILED: Absent subscriber",
    }


@pytest.mark.parametrize(
    ("where", "numbers"),
    [
        (FailedFilter(stage="api"), {"33612345678", "447700900004"}),
        (FailedFilter(stage="delivery"), {"447700900002"}),
        (FailedFilter(code="127"), {"447700900005"}),
        (FailedFilter(code="failed"), {"447700900002"}),
        (FailedFilter(number="0900"), {"447700900004", "447700900005", "447700900002"}),
        (FailedFilter(stage="capped"), set()),
    ],
)
def test_failed_numbers_filter_by_stage_code_and_digits(rows, where, numbers):
    found = list(failed_rows.failed_blocks(*rows, where))
    assert {r["destination_number"] for r in found} == numbers
    assert sum(failed_rows.failed_count(*rows, where).values()) == len(found)


def test_numbers_are_masked_unless_asked_in_the_page_and_the_csv(rows):
    found = list(failed_rows.failed_blocks(*rows, FailedFilter()))
    masked = [failed.shown(r, full=False) for r in found]
    assert masked[0]["destination_number"] == "+33 ******* 78"
    assert masked[-1]["input_number"] == "+44 ******** 02"  # a delivery row: the number sent to
    assert failed.shown(found[0], full=True) == found[0]
    lines = "".join(failed.csv_lines(iter(found), full=False))
    table = list(csv.DictReader(io.StringIO(lines)))
    assert len(table) == len(found) and "447700900004" not in lines
    assert table[0]["destination_number"] == "+33 ******* 78"


def test_reasons_are_in_one_order_whatever_order_the_groups_come_in():
    """Stored counts and a scan return their groups in different orders: reasons of equal
    counts are ordered by code and reason, so both give the page the same list."""
    groups = [
        ("447", "failed", None, 510, "blocked", 2),
        ("447", "failed", None, 509, "disabled", 2),
        (None, "invalid", None, None, "empty", 1),
        ("336", "invalid", None, None, "too short", 1),
        ("447", "failed", None, None, None, 2),
    ]
    expected = queries.SendGroups(groups).reasons()
    assert queries.SendGroups(groups[::-1]).reasons() == expected
    assert [r["error_code"] for r in expected["failed"]] == [None, 509, 510]
    assert [r["reason"] for r in expected["invalid"]] == ["empty", "too short"]


def test_the_cost_is_the_same_whatever_order_the_groups_come_in():
    """Floats summed in another order give another total; the page's is exact (fsum)."""
    groups = [("DELIVERED", m, 1, 1, cost, 1) for m, cost in enumerate([0.1, 1e16, 0.3, -1e16])]
    totals = {queries.StatusGroups(order).counts()["cost"] for order in (groups, groups[::-1])}
    assert totals == {0.4}
