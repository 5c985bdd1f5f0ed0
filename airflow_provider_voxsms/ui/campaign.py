"""One send task's campaign as the page shows it and the JSON endpoint returns it.

Counts come from the rows (grouped in SQL, :mod:`.queries`: stored once when the task
finished, or counted now), so the page proves what the task's return value says: ``identity``
compares the two, and the sum of every outcome with the recipients. Rows an XCom never holds (duplicates, suppressed, held out) are taken from the
return value. Delivered, fragments and cost come from the delivery report's rows when it has any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_voxsms.sms.delivery import PENDING
from airflow_provider_voxsms.sms.report import OUTCOME_SUMMARY_KEYS
from airflow_provider_voxsms.ui import queries
from airflow_provider_voxsms.ui.tables import OwnedRows

#: The outcomes an input row can have, in the page's order, by the return value's names.
OUTCOME_KEYS = (
    "accepted",
    "failed",
    "unknown",
    "not_sent",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
    "capped",
    "expired",
    "held_out",
)
_SUMMARY_KEY = dict(OUTCOME_SUMMARY_KEYS)  # row outcome -> return value key
_NOT_IN_XCOM = ("duplicates", "suppressed", "held_out")
STATUS_ORDER = ("DELIVERED", "FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN", PENDING)


@dataclass
class CampaignRows:
    """Where one send's campaign is: its return value and its rows.

    :param summary: the send's return value (None while it has none: running, or failed
        before its result).
    :param outcomes: its outcome rows; ``outcomes_from`` says ``"table"`` or ``"xcom"``.
    :param report: the delivery report's return value, when the DAG has one and it ran.
    :param statuses: the report's status rows; ``statuses_from`` likewise.
    """

    summary: dict | None
    outcomes: OwnedRows | None
    outcomes_from: str | None
    report: dict | None = None
    statuses: OwnedRows | None = None
    statuses_from: str | None = None
    report_task: str | None = None


def campaign_view(task: dict, rows: CampaignRows) -> dict[str, Any]:
    """Everything the page shows, as JSON-friendly values (see docs/campaign-page.md): the
    counts the send and the report stored when they finished (a few rows each, whatever the
    campaign's size), or, without them, one scan of the send's rows and two of the report's;
    with text variants, delivered per variant as the report stored it (its join of the two),
    or without it that join now."""
    summary = rows.summary or {}
    sent_groups = queries.send_groups(rows.outcomes) if rows.outcomes is not None else None
    status_groups = queries.status_groups(rows.statuses) if rows.statuses is not None else None
    counts = _outcome_counts(rows, sent_groups)
    recipients = summary.get("recipients", sum(counts.values()))
    delivery = _delivery(rows, status_groups)
    sent = counts["accepted"] + counts["failed"] + counts["unknown"]
    valid = summary.get("valid", recipients - counts["invalid"] - counts["duplicates"])
    funnel = [
        {"step": "recipients", "count": recipients},
        {"step": "valid", "count": valid},
        {"step": "sent", "count": sent},
        {"step": "accepted", "count": counts["accepted"]},
    ]
    if delivery is not None:
        funnel.append({"step": "delivered", "count": delivery["statuses"].get("DELIVERED", 0)})
    reasons = sent_groups.reasons() if sent_groups is not None else {}
    countries, variants = [], _summary_variants(summary)
    if sent_groups is not None:
        delivered = queries.delivered_by_country(rows.statuses) if rows.statuses else None
        countries = sent_groups.countries(delivered)
        if sent_groups.variants(None):
            by_variant = (
                queries.delivered_by_variant(rows.outcomes, rows.statuses)
                if rows.statuses is not None
                else None
            )
            variants = sent_groups.variants(by_variant)
    return {
        "task": task,
        "sources": {"outcomes": rows.outcomes_from, "statuses": rows.statuses_from},
        "summary": rows.summary,
        "report": rows.report,
        "report_task": rows.report_task,
        "funnel": funnel,
        "outcomes": counts,
        "identity": {
            "recipients": recipients,
            "outcomes": sum(counts.values()),
            "holds": recipients == sum(counts.values()),
            "matches_return_value": _matches(summary, counts),
        },
        "reasons": {_SUMMARY_KEY.get(o, o): r for o, r in reasons.items()},
        "countries": countries,
        "variants": variants,
        "segments": {
            "planned": summary.get("segments_planned"),
            "sent": summary.get("fragments"),
            "saved_by_smart_encoding": summary.get("segments_saved"),
            "delivery_fragments": delivery["fragments"] if delivery else None,
        },
        "delivery": delivery,
        "failed": {
            "send": sent_groups.failed() if sent_groups is not None else 0,
            "delivery": status_groups.undelivered() if status_groups is not None else 0,
        },
    }


def _outcome_counts(rows: CampaignRows, groups: queries.SendGroups | None) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOME_KEYS, 0)
    if groups is not None:
        for outcome, count in groups.outcome_counts().items():
            counts[_SUMMARY_KEY.get(outcome, outcome)] += count
    if rows.outcomes_from != "table" and rows.summary:
        for key in _NOT_IN_XCOM if groups is not None else OUTCOME_KEYS:
            counts[key] = int(rows.summary.get(key, 0))
    return counts


def _matches(summary: dict, counts: dict[str, int]) -> bool | None:
    """Whether every outcome's count equals the return value's (None without one)."""
    if not summary:
        return None
    return all(int(summary.get(key, 0)) == count for key, count in counts.items())


def _delivery(rows: CampaignRows, groups: queries.StatusGroups | None) -> dict | None:
    if groups is None:
        return None
    found = groups.counts()
    statuses = {s: found["statuses"].get(s, 0) for s in STATUS_ORDER}
    statuses.update(found["statuses"])
    messages = sum(statuses.values())
    cost = found["cost"]
    if cost is None and rows.report:
        cost = rows.report.get("cost") or None
    return {
        "messages": messages,
        "statuses": statuses,
        "final": messages - statuses.get(PENDING, 0),
        "fragments": found["fragments"],
        "cost": cost,
        "over_time": groups.final_by_minute(),
    }


def _summary_variants(summary: dict) -> list[dict]:
    """The return value's variants (``{name: {recipients, accepted}}``), when rows have none."""
    return [{"variant": name, **counts} for name, counts in (summary.get("variants") or {}).items()]
