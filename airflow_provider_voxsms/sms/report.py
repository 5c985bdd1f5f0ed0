"""A run's outcomes as the tables and the summary a DAG consumes (XComs ``failed_numbers`` and co)."""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms.dispatch import DispatchReport
from airflow_provider_voxsms.sms.plan import SendPlan
from airflow_provider_voxsms.sms.recipients import PreparedRecipients

FAILED_COLUMNS = ["destination_number", "error_code", "error_description", "stage"]


def failed_numbers(prepared: PreparedRecipients, report: DispatchReport | None) -> pd.DataFrame:
    """Invalid rows (stage ``validation``, original value) and numbers the API failed (``api``)."""
    invalid = pd.DataFrame(
        {
            "destination_number": prepared.invalid["original"].astype(str),
            "error_code": pd.array([None] * len(prepared.invalid), dtype="Int64"),
            "error_description": prepared.invalid["reason"].astype(str),
            "stage": "validation",
        }
    )
    rows = [row for outcome in (report.outcomes if report else []) for row in outcome.failed]
    api = pd.DataFrame(rows, columns=FAILED_COLUMNS[:3])
    api["error_code"] = api["error_code"].astype("Int64")
    api["stage"] = "api"
    return pd.concat([invalid, api], ignore_index=True)[FAILED_COLUMNS]


def accepted_numbers(report: DispatchReport | None) -> pd.DataFrame:
    """Every accepted number with its message id (for delivery checks later)."""
    rows = [row for outcome in (report.outcomes if report else []) for row in outcome.accepted]
    frame = pd.DataFrame(rows, columns=["destination_number", "message_id"])
    frame["message_id"] = frame["message_id"].astype("int64")
    return frame


def unknown_numbers(report: DispatchReport | None) -> pd.DataFrame:
    """Numbers whose request may or may not have been processed: check before sending again."""
    rows = [row for outcome in (report.outcomes if report else []) for row in outcome.unknown]
    return pd.DataFrame(rows, columns=["destination_number", "reason"])


def summarise(
    prepared: PreparedRecipients,
    plan: SendPlan,
    report: DispatchReport | None,
    duration_s: float,
) -> dict:
    """The task's small, JSON-friendly return value. Counts add up to ``recipients``:

    ``accepted + failed + unknown + invalid + duplicates == recipients``
    (``not_sent`` is the part of ``failed`` that never reached the API and may be sent again).
    """
    outcomes = report.outcomes if report else []
    summary = {
        "recipients": prepared.total,
        "valid": len(prepared.valid),
        "invalid": len(prepared.invalid),
        "duplicates": prepared.duplicates,
        "batches": len(plan.batches),
        "segments_planned": plan.total_segments,
        "accepted": sum(len(o.accepted) for o in outcomes),
        "failed": sum(len(o.failed) for o in outcomes),
        "not_sent": sum(len(o.failed) for o in outcomes if not o.sent),
        "unknown": sum(len(o.unknown) for o in outcomes),
        "fragments": sum(o.fragments for o in outcomes),
        "duration_s": round(duration_s, 3),
        "dry_run": report is None,
    }
    if report and report.stopped_by is not None:
        summary["stopped_by"] = str(report.stopped_by)
    return summary
