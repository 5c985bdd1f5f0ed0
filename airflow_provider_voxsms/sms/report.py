"""A run's outcomes as the tables and the summary a DAG consumes (XComs ``failed_numbers`` and co)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from airflow_provider_voxsms.sms.model import FAILED_COLUMNS, OUTCOME_COLUMNS, CampaignReport
from airflow_provider_voxsms.sms.plan import SendPlan
from airflow_provider_voxsms.sms.recipients import PreparedRecipients
from airflow_provider_voxsms.sms.window import SendWindow, assess


def failed_numbers(prepared: PreparedRecipients, report: CampaignReport | None) -> pd.DataFrame:
    """Every number that got no SMS for a known reason, one row each (``FAILED_COLUMNS``):
    invalid rows (stage ``validation``), numbers the API refused (``api``) and numbers that
    never reached the API (``not_sent``), each with the number as written and normalised."""
    invalid = pd.DataFrame(
        {
            "destination_number": prepared.invalid["phone"].astype(object),
            "input_number": prepared.invalid["original"].astype(str),
            "error_code": pd.array([None] * len(prepared.invalid), dtype="Int64"),
            "error_description": prepared.invalid["reason"].astype(str),
            "stage": "validation",
        }
    )
    frames = [invalid]
    for kind, stage in (("failed", "api"), ("not_sent", "not_sent")):
        rows = [row for outcome in _outcomes(report) for row in getattr(outcome, kind)]
        frame = pd.DataFrame(
            rows, columns=["destination_number", "error_code", "error_description"]
        )
        frame["input_number"] = prepared.as_written(frame["destination_number"].tolist())
        frame["error_code"] = frame["error_code"].astype("Int64")
        frame["stage"] = stage
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[FAILED_COLUMNS]


def invalid_summary(prepared: PreparedRecipients, examples: int = 3) -> list[str]:
    """One line per kind of invalid row (the reason up to its first colon), most common first,
    with its count and a few of the values as written."""
    if prepared.invalid.empty:
        return []
    kinds = prepared.invalid["reason"].astype(str).str.split(":", n=1).str[0]
    lines = []
    for kind, rows in prepared.invalid.groupby(kinds.to_numpy(), sort=False):
        shown = ", ".join(repr(v) for v in rows["original"].head(examples).tolist())
        lines.append((len(rows), f"{len(rows)} x {kind} (e.g. {shown})"))
    return [line for _, line in sorted(lines, key=lambda item: -item[0])]


def accepted_numbers(report: CampaignReport | None) -> pd.DataFrame:
    """Every accepted number with its message id (for delivery checks later)."""
    rows = [row for outcome in _outcomes(report) for row in outcome.accepted]
    frame = pd.DataFrame(rows, columns=["destination_number", "message_id"])
    frame["message_id"] = frame["message_id"].astype("int64")
    return frame


def unknown_numbers(report: CampaignReport | None) -> pd.DataFrame:
    """Numbers whose request may or may not have been processed: check before sending again."""
    rows = [row for outcome in _outcomes(report) for row in outcome.unknown]
    return pd.DataFrame(rows, columns=["destination_number", "reason"])


def summarise(
    prepared: PreparedRecipients,
    plan: SendPlan,
    report: CampaignReport | None,
    *,
    suppressed: int = 0,
    outside_window: int = 0,
    dry_run: bool,
    duration_s: float,
) -> dict:
    """The task's small, JSON-friendly return value. Every recipient is counted once:

    ``accepted + failed + not_sent + unknown + invalid + duplicates + suppressed +
    outside_window == recipients``

    ``failed``: the API refused the number; ``not_sent``: its request never reached the API
    (a stopped run, or throttled in every settle round) and it may be sent again;
    ``reconciled`` (of ``accepted``): found in the history after an ambiguous answer;
    ``resent``: numbers sent again in this run; ``earlier``: settled by earlier tries.
    """
    report = report or CampaignReport()
    summary = {
        "recipients": prepared.total,
        "valid": len(prepared.valid),
        "invalid": len(prepared.invalid),
        "duplicates": prepared.duplicates,
        "suppressed": suppressed,
        "outside_window": outside_window,
        "batches": len(plan.batches),
        "distinct_texts": plan.texts,
        "segments_planned": plan.total_segments,
        "accepted": report.total("accepted"),
        "failed": report.total("failed"),
        "not_sent": report.total("not_sent"),
        "unknown": report.total("unknown"),
        "earlier": report.earlier,
        "reconciled": report.reconciled,
        "resent": report.resent,
        "fragments": sum(o.fragments for o in report.outcomes),
        "duration_s": round(duration_s, 3),
        "dry_run": dry_run,
    }
    if report.stopped_by is not None:
        summary["stopped_by"] = str(report.stopped_by)
    return summary


# The summary's count of each results-table outcome.
OUTCOME_SUMMARY_KEYS = {
    "accepted": "accepted",
    "failed": "failed",
    "not_sent": "not_sent",
    "unknown": "unknown",
    "invalid": "invalid",
    "duplicate": "duplicates",
    "suppressed": "suppressed",
    "deferred": "outside_window",
}


def add_up(summaries: list[dict], *, dry_run: bool) -> dict:
    """One summary of a campaign read in chunks: the chunks' counts added up."""
    total: dict = {}
    for summary in summaries:
        for key, value in summary.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            elif key not in total:
                total[key] = value
    total["dry_run"] = dry_run
    return total


DEFERRED_COLUMNS = ["destination_number", "time_zone", "next_window_start"]


def deferred_numbers(held: pd.DataFrame, window: SendWindow | None, now: datetime) -> pd.DataFrame:
    """Rows kept back outside their send window (``DEFERRED_COLUMNS``), for a later run:
    ``next_window_start`` is UTC ISO time, missing when the number's zones never share it."""
    if window is None or held.empty:
        return pd.DataFrame(columns=DEFERRED_COLUMNS)
    judged = assess(held["phone"], window, now)
    return pd.DataFrame(
        {
            "destination_number": held["phone"].astype(object).to_numpy(),
            "time_zone": judged["time_zone"].to_numpy(),
            "next_window_start": [
                None if pd.isna(start) else start.isoformat()
                for start in judged["next_window_start"]
            ],
        }
    )


def _outcomes(report: CampaignReport | None):
    return report.outcomes if report else []


DUPLICATE_REASON = "same number and text as an earlier row: sent once"
SUPPRESSED_REASON = "opted out (suppression list)"
DEFERRED_REASON = "outside the send window"


def outcome_rows(
    prepared: PreparedRecipients,
    report: CampaignReport | None,
    *,
    suppressed: pd.DataFrame,
    deferred: pd.DataFrame,
) -> pd.DataFrame:
    """One row per input row with its outcome (``results.OUTCOME_COLUMNS``), for the results
    table: ``suppressed`` holds the opted-out rows (``phone``), ``deferred`` the
    :func:`deferred_numbers` rows."""
    stage_outcome = {"validation": "invalid", "api": "failed", "not_sent": "not_sent"}
    failed = failed_numbers(prepared, report)
    accepted = accepted_numbers(report)
    unknown = unknown_numbers(report)
    copies = prepared.copies if prepared.copies is not None else pd.DataFrame(columns=["phone"])
    frames = [
        pd.DataFrame(
            {
                "destination_number": accepted["destination_number"].astype(object),
                "input_number": prepared.as_written(accepted["destination_number"].tolist()),
                "outcome": "accepted",
                "message_id": accepted["message_id"],
            }
        ),
        pd.DataFrame(
            {
                "destination_number": failed["destination_number"],
                "input_number": failed["input_number"],
                "outcome": failed["stage"].map(stage_outcome),
                "error_code": failed["error_code"],
                "reason": failed["error_description"],
            }
        ),
        pd.DataFrame(
            {
                "destination_number": unknown["destination_number"],
                "input_number": prepared.as_written(unknown["destination_number"].tolist()),
                "outcome": "unknown",
                "reason": unknown["reason"],
            }
        ),
        pd.DataFrame(
            {
                "destination_number": copies["phone"].astype(object),
                "input_number": prepared.copies_as_written(),
                "outcome": "duplicate",
                "reason": DUPLICATE_REASON,
            }
        ),
        pd.DataFrame(
            {
                "destination_number": suppressed["phone"].astype(object),
                "input_number": prepared.as_written(suppressed["phone"].astype(object).tolist()),
                "outcome": "suppressed",
                "reason": SUPPRESSED_REASON,
            }
        ),
        pd.DataFrame(
            {
                "destination_number": deferred["destination_number"],
                "input_number": prepared.as_written(deferred["destination_number"].tolist()),
                "outcome": "deferred",
                "reason": DEFERRED_REASON,
                "time_zone": deferred["time_zone"],
                "next_window_start": deferred["next_window_start"],
            }
        ),
    ]
    frames = [frame.reindex(columns=OUTCOME_COLUMNS) for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    return pd.concat(frames, ignore_index=True)
