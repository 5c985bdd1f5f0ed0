"""What the campaign page counts, as SQL over one owner's rows: the database does the work.

Every function answers with a few dozen rows whatever the campaign's size: counts grouped by
outcome, reason, country head, variant, status or minute. They are read from the counts the
task stored when it finished (``storage.summary``: the same ``GROUP BY`` s, run once), or, where
there are none (XCom rows, runs from before, a try that failed), counted over the rows. Nothing
here loads a campaign's rows into Python (the failed numbers themselves: :mod:`.failed_rows`).
Outcome rows are a send's (``storage.results``); status rows a delivery report's
(``storage.delivery_status``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from airflow_provider_voxsms.sms.delivery import PENDING, UNDELIVERED_STATUSES
from airflow_provider_voxsms.sms.numbers.plan import calling_codes
from airflow_provider_voxsms.storage.summary import GROUPINGS, VARIANTS, joined_tag
from airflow_provider_voxsms.ui.failed_rows import FAILED_STAGES
from airflow_provider_voxsms.ui.tables import OwnedRows


def groups(rows: OwnedRows, kind: str) -> list[tuple]:
    """The rows counted by one of ``storage.summary.GROUPINGS``: as stored when the task
    finished, or by one ``GROUP BY`` over the rows."""
    stored = rows.stored()
    if stored is not None:
        return stored[kind]
    grouping = GROUPINGS[kind]
    select = grouping.select_list(rows.dialect)
    return rows.all(rows.select(select, grouping.extra, grouping.group_by(rows.dialect)))


@dataclass(frozen=True)
class SendGroups:
    """A send's rows counted by (number head, outcome, variant, error code, reason) in one
    scan, from which the outcomes, reasons, countries and variants are summed. Accepted rows
    carry no code nor reason, so the groups number about the heads times the outcomes, plus the
    distinct reasons of the others."""

    groups: list[tuple[str | None, str, str | None, int | None, str | None, int]]

    def outcome_counts(self) -> dict[str, int]:
        """Rows per outcome."""
        counts: dict[str, int] = {}
        for _, outcome, *_, n in self.groups:
            counts[outcome] = counts.get(outcome, 0) + n
        return counts

    def reasons(self, limit: int = 50) -> dict[str, list[dict]]:
        """Per outcome other than accepted: its (error code, reason) pairs, most frequent
        first, at most ``limit`` of them."""
        pairs: dict[tuple[str, int | None, str | None], int] = {}
        for _, outcome, _, code, reason, n in self.groups:
            if outcome != "accepted":
                pairs[(outcome, code, reason)] = pairs.get((outcome, code, reason), 0) + n
        found: dict[str, list[dict]] = {}
        for (outcome, code, reason), n in sorted(pairs.items(), key=_most_first):
            kept = found.setdefault(outcome, [])
            if len(kept) < limit:
                kept.append({"error_code": code, "reason": reason, "count": n})
        return found

    def failed(self) -> int:
        """The send's failed numbers (the outcomes of ``FAILED_STAGES``)."""
        return sum(n for _, outcome, *_, n in self.groups if outcome in FAILED_STAGES)

    def countries(self, delivered: dict[str, int] | None) -> list[dict]:
        """Rows, accepted and failed per calling code (``"none"`` for rows without a number),
        and ``delivered`` (by calling code) when known; largest first."""
        table: dict[str, dict] = {}
        codes = _codes([head for head, *_ in self.groups])
        for (_, outcome, *_, n), code in zip(self.groups, codes, strict=True):
            row = table.setdefault(
                code, {"country_code": code, "recipients": 0, "accepted": 0, "failed": 0}
            )
            row["recipients"] += n
            row["accepted"] += n if outcome == "accepted" else 0
            row["failed"] += n if outcome in FAILED_STAGES else 0
        if delivered is not None:
            for code, n in delivered.items():
                table.setdefault(
                    code, {"country_code": code, "recipients": 0, "accepted": 0, "failed": 0}
                )["delivered"] = n
            for row in table.values():
                row.setdefault("delivered", 0)
        return sorted(table.values(), key=lambda r: (-r["recipients"], r["country_code"]))

    def variants(self, delivered: dict[str, int] | None) -> list[dict]:
        """People (copies aside) and accepted per variant, and ``delivered`` when known;
        empty without variants."""
        found: dict[str, dict] = {}
        for _, outcome, variant, *_, n in self.groups:
            if variant is None or outcome == "duplicate":
                continue
            row = found.setdefault(variant, {"variant": variant, "recipients": 0, "accepted": 0})
            row["recipients"] += n
            row["accepted"] += n if outcome == "accepted" else 0
        if delivered is not None:
            for name, row in found.items():
                row["delivered"] = delivered.get(name, 0)
        return [found[name] for name in sorted(found)]


def _most_first(pair: tuple) -> tuple:
    """Most frequent first; ties by outcome, code and reason (whatever order rows came in)."""
    (outcome, code, reason), n = pair
    return (-n, outcome, code is not None, code or 0, reason is not None, reason or "")


def send_groups(outcomes: OwnedRows) -> SendGroups:
    """A send's rows grouped by number head, outcome, variant and reason (:func:`groups`)."""
    return SendGroups(
        [
            (head, outcome, variant, None if code is None else int(code), reason, int(n))
            for head, outcome, variant, code, reason, n in groups(outcomes, "send")
        ]
    )


def delivered_by_country(statuses: OwnedRows) -> dict[str, int]:
    """Delivered messages per calling code."""
    delivered: dict[str, int] = {}
    heads = groups(statuses, "delivered")
    for (_, n), code in zip(heads, _codes([h for h, _ in heads]), strict=True):
        delivered[code] = delivered.get(code, 0) + int(n)
    return delivered


def delivered_by_variant(outcomes: OwnedRows, statuses: OwnedRows) -> dict[str, int] | None:
    """Delivered messages per variant: a join on the message id, so only when both tables
    are on one connection (None otherwise). As the report stored it when it finished, when it
    joined these very rows (``storage.summary.VARIANTS``); else joined now."""
    if statuses.conn is not outcomes.conn:
        return None
    stored = statuses.stored()
    if stored is not None:
        tag = joined_tag(outcomes.table, outcomes.key)
        found = [(name, n) for joined, name, n in stored[VARIANTS] if joined == tag]
        if found:  # the join's marker row (no variant) at least
            return {name: int(n) for name, n in found if name is not None}
    o, s = outcomes, statuses
    sql = (
        f"SELECT o.variant, COUNT(*) FROM {o.table} o JOIN {s.table} s "
        "ON s.message_id = o.message_id "
        + _aliased(o, "o", "o.variant IS NOT NULL AND o.outcome = 'accepted'")
        + " AND "
        + _aliased(s, "s", "s.delivery_status = 'DELIVERED'").removeprefix("WHERE ")
        + " GROUP BY o.variant"
    )
    return {name: int(n) for name, n in o.all(sql, tuple(s.key.values()))}


@dataclass(frozen=True)
class StatusGroups:
    """A report's rows counted by (status, minutes from sending to the row) in one scan,
    with their fragments and cost, and how many rows had a cost."""

    groups: list[tuple[str, int | None, int, int, float, int]]

    def counts(self) -> dict:
        """Messages per delivery status, and the fragments and cost the history reported
        (``cost`` None when no row had one)."""
        statuses: dict[str, int] = {}
        for status, _, n, *_ in self.groups:
            statuses[status] = statuses.get(status, 0) + n
        costed = sum(g[5] for g in self.groups)
        return {
            "statuses": statuses,
            "fragments": sum(g[3] for g in self.groups),
            # fsum: exact, so the same whatever order the groups came in
            "cost": round(math.fsum(g[4] for g in self.groups), 6) if costed else None,
        }

    def undelivered(self) -> int:
        return sum(n for status, _, n, *_ in self.groups if status in UNDELIVERED_STATUSES)

    def final_by_minute(self) -> list[dict]:
        """Messages that reached a final status by whole minutes from sending, with the
        cumulative ``share`` of all followed messages; empty without times (XCom rows)."""
        total = sum(g[2] for g in self.groups)
        by_minute: dict[int, int] = {}
        for status, minute, n, *_ in self.groups:
            if minute is not None and status != PENDING:
                by_minute[max(0, minute)] = by_minute.get(max(0, minute), 0) + n
        curve, done = [], 0
        for minute in sorted(by_minute):
            done += by_minute[minute]
            share = round(done / total, 4) if total else 0.0
            curve.append({"minute": minute, "final": done, "share": share})
        return curve


def status_groups(statuses: OwnedRows) -> StatusGroups:
    """A report's rows grouped by status and minutes (:func:`groups`). A message's minutes run
    from the history's ``processing_date`` to the report's row (``checked_at``)."""
    return StatusGroups(
        [
            (
                status,
                None if minute is None else int(minute),
                int(n),
                int(fragments or 0),
                float(cost or 0.0),
                int(costed or 0),
            )
            for status, minute, n, fragments, cost, costed in groups(statuses, "status")
        ]
    )


def _codes(heads: list) -> list[str]:
    """Each 3-digit head's calling code as text; ``"none"`` for no number or no code."""
    digits = pd.Series([h if isinstance(h, str) else "" for h in heads], dtype=object)
    codes = calling_codes(digits) if len(digits) else []
    return [str(c) if c else "none" for c in codes]


def _aliased(rows: OwnedRows, alias: str, extra: str) -> str:
    """``WHERE`` the owner's key with its columns qualified by ``alias``."""
    key = " AND ".join(f"{alias}.{column} = {rows.placeholder}" for column in rows.key)
    return f"WHERE {key} AND ({extra})"
