"""The campaign page's view (ui.campaign) over a send's XCom frames (ui.xcom_tables): what an
XCom lacks comes from the return value, the identity is checked, and a send that failed before
its return value still shows what its outputs hold."""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.ui import xcom_tables
from airflow_provider_voxsms.ui.campaign import CampaignRows, campaign_view

TASK = {"dag_id": "d", "run_id": "r", "task_id": "send", "map_index": -1}


def frames() -> dict[str, pd.DataFrame]:
    """Three accepted (one of variant B), two failed by the API, one invalid, one unknown."""
    return {
        "accepted_numbers": pd.DataFrame(
            {
                "destination_number": ["447700900001", "447700900002", "33612345678"],
                "message_id": [11, 12, 13],
                "variant": ["A", "B", "A"],
            }
        ),
        "failed_numbers": pd.DataFrame(
            {
                "destination_number": ["447700900003", "447700900004", None],
                "input_number": ["+447700900003", "+447700900004", "12"],
                "error_code": pd.array([509, 509, None], dtype="Int64"),
                "error_description": ["A2P SMS disabled", "A2P SMS disabled", "too short"],
                "stage": ["api", "api", "validation"],
            }
        ),
        "unknown_numbers": pd.DataFrame(
            {"destination_number": ["447700900005"], "reason": ["timed out"]}
        ),
        "deferred_numbers": None,
    }


SUMMARY = {
    "recipients": 9,
    "valid": 7,
    "invalid": 1,
    "duplicates": 1,
    "suppressed": 1,
    "outside_window": 0,
    "accepted": 3,
    "failed": 2,
    "not_sent": 0,
    "unknown": 1,
    "capped": 0,
    "expired": 0,
    "held_out": 0,
    "segments_planned": 6,
    "fragments": 3,
}


def view_of(summary: dict | None, statuses: pd.DataFrame | None = None) -> dict:
    conn = xcom_tables.memory_db()
    rows = CampaignRows(summary, xcom_tables.outcome_rows(conn, frames()), "xcom")
    if statuses is not None:
        rows.statuses, rows.statuses_from = xcom_tables.status_rows(conn, statuses), "xcom"
    return campaign_view(TASK, rows)


def test_rows_an_xcom_lacks_come_from_the_return_value_and_the_identity_holds():
    statuses = pd.DataFrame(
        {
            "message_id": [11, 12, 13],
            "destination_number": ["447700900001", "447700900002", "33612345678"],
            "delivery_status": ["DELIVERED", "FAILED", "pending"],
            "error_message": [None, "Absent subscriber", None],
            "fragments": [1, 1, 1],
            "cost": [0.03, 0.03, None],
            "processing_date": ["2026-01-01 10:00:00"] * 3,
        }
    )
    view = view_of(SUMMARY, statuses)
    assert view["outcomes"]["duplicates"] == 1 and view["outcomes"]["suppressed"] == 1
    assert view["identity"] == {
        "recipients": 9,
        "outcomes": 9,
        "holds": True,
        "matches_return_value": True,
    }
    assert [(f["step"], f["count"]) for f in view["funnel"]] == [
        ("recipients", 9),
        ("valid", 7),
        ("sent", 6),
        ("accepted", 3),
        ("delivered", 1),
    ]
    assert view["reasons"]["failed"] == [
        {"error_code": 509, "reason": "A2P SMS disabled", "count": 2}
    ]
    assert view["failed"] == {"send": 3, "delivery": 1}
    assert view["delivery"]["statuses"]["pending"] == 1
    assert view["delivery"]["cost"] == 0.06
    assert view["delivery"]["over_time"] == []  # XCom rows carry no times
    assert [v["variant"] for v in view["variants"]] == ["A", "B"]
    assert {c["country_code"]: c["recipients"] for c in view["countries"]} == {
        "44": 5,
        "33": 1,
        "none": 1,
    }


def test_a_return_value_that_disagrees_with_the_rows_is_shown_as_such():
    view = view_of({**SUMMARY, "accepted": 4, "recipients": 10})
    assert view["identity"]["holds"] is False
    assert view["identity"]["matches_return_value"] is False


def test_a_send_without_a_return_value_shows_what_its_outputs_hold():
    view = view_of(None)
    assert view["summary"] is None and view["identity"]["matches_return_value"] is None
    assert view["outcomes"]["accepted"] == 3 and view["outcomes"]["invalid"] == 1
    assert view["identity"]["recipients"] == 7 and view["identity"]["holds"]
    assert view["delivery"] is None and [f["step"] for f in view["funnel"]][-1] == "accepted"
