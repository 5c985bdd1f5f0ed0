"""What the campaign page counts, as SQL over one owner's rows: the database does the work.

Every function answers with a few dozen rows whatever the campaign's size: counts grouped by
outcome, reason, country head, variant, status or minute. Nothing here loads a campaign's rows
into Python, except :func:`failed_page` (one page) and :func:`failed_blocks` (the CSV, a block
at a time). Outcome rows are a send's (``storage.results``); status rows a delivery report's
(``storage.delivery_status``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from airflow_provider_voxsms.sms.delivery import PENDING, UNDELIVERED_STATUSES
from airflow_provider_voxsms.sms.numbers.plan import calling_codes
from airflow_provider_voxsms.ui.tables import OwnedRows

#: A send's outcomes that are failed numbers, and the stage its failed_numbers XCom names.
FAILED_STAGES = {
    "invalid": "validation",
    "failed": "api",
    "not_sent": "not_sent",
    "capped": "capped",
    "expired": "expired",
}
DELIVERY_STAGE = "delivery"
UNDELIVERED = tuple(sorted(UNDELIVERED_STATUSES))
# The first three digits of a number (a leading "+" skipped): enough to name its calling code,
# as calling codes are prefix-free and at most three digits long. (No literal "%" in the SQL:
# psycopg reads it as a parameter mark.)
_HEAD = (
    "CASE WHEN SUBSTR(destination_number, 1, 1) = '+' THEN SUBSTR(destination_number, 2, 3) "
    "ELSE SUBSTR(destination_number, 1, 3) END"
)


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
        for (outcome, code, reason), n in sorted(pairs.items(), key=lambda p: -p[1]):
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


def send_groups(outcomes: OwnedRows) -> SendGroups:
    """One scan of a send's rows, grouped by number head, outcome, variant and reason."""
    columns = f"{_HEAD}, outcome, variant, error_code, reason"
    sql = outcomes.select(f"{columns}, COUNT(*)", tail=f"GROUP BY {columns}")
    return SendGroups(
        [
            (head, outcome, variant, None if code is None else int(code), reason, int(n))
            for head, outcome, variant, code, reason, n in outcomes.all(sql)
        ]
    )


def delivered_by_country(statuses: OwnedRows) -> dict[str, int]:
    """Delivered messages per calling code."""
    sql = statuses.select(
        f"{_HEAD}, COUNT(*)", extra="delivery_status = 'DELIVERED'", tail=f"GROUP BY {_HEAD}"
    )
    delivered: dict[str, int] = {}
    heads = statuses.all(sql)
    for (_, n), code in zip(heads, _codes([h for h, _ in heads]), strict=True):
        delivered[code] = delivered.get(code, 0) + int(n)
    return delivered


def delivered_by_variant(outcomes: OwnedRows, statuses: OwnedRows) -> dict[str, int] | None:
    """Delivered messages per variant: a join on the message id, so only when both tables
    are on one connection (None otherwise)."""
    if statuses.conn is not outcomes.conn:
        return None
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
            "cost": round(sum(g[4] for g in self.groups), 6) if costed else None,
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
    """One scan of a report's rows. A message's minutes run from the history's
    ``processing_date`` to the report's row (``checked_at``)."""
    if statuses.dialect == "sqlite":
        minutes = "CAST((julianday(checked_at) - julianday(processing_date)) * 1440 AS INTEGER)"
    else:
        minutes = (
            "CAST(FLOOR(EXTRACT(EPOCH FROM (checked_at - CAST(processing_date AS TIMESTAMP)))"
            " / 60) AS INTEGER)"
        )
    sql = statuses.select(
        f"delivery_status, {minutes}, COUNT(*), SUM(fragments), SUM(cost), COUNT(cost)",
        tail=f"GROUP BY delivery_status, {minutes}",
    )
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
            for status, minute, n, fragments, cost, costed in statuses.all(sql)
        ]
    )


@dataclass(frozen=True)
class FailedFilter:
    """Which failed numbers: a stage (``validation``, ``api``, ... ``delivery``), an error code
    or delivery status, and digits the number contains."""

    stage: str | None = None
    code: str | None = None
    number: str | None = None


def failed_count(
    outcomes: OwnedRows | None, statuses: OwnedRows | None, where: FailedFilter
) -> dict[str, int]:
    """How many failed numbers match, from the send and from the delivery report."""
    counts = {"send": 0, "delivery": 0}
    if outcomes is not None and (sql := _send_failed(outcomes, where, "COUNT(*)")):
        counts["send"] = int(outcomes.all(*sql)[0][0])
    if statuses is not None and (sql := _delivery_failed(statuses, where, "COUNT(*)")):
        counts["delivery"] = int(statuses.all(*sql)[0][0])
    return counts


def failed_page(
    outcomes: OwnedRows | None,
    statuses: OwnedRows | None,
    where: FailedFilter,
    *,
    offset: int,
    limit: int,
    counts: dict[str, int] | None = None,
) -> list[dict]:
    """One page of failed numbers: the send's first (by outcome and number), then the
    delivery report's. Rows: stage, destination_number, input_number, error_code,
    description. ``counts``: :func:`failed_count`'s answer, when the caller has it."""
    counts = counts or failed_count(outcomes, statuses, where)
    rows: list[tuple] = []
    if offset < counts["send"] and (found := _send_failed(outcomes, where, _SEND_COLUMNS)):
        sql, params = found
        page = f" ORDER BY outcome, destination_number LIMIT {int(limit)} OFFSET {int(offset)}"
        rows += outcomes.all(sql + page, params)
    left = limit - len(rows)
    if left > 0 and counts["delivery"]:
        skip = max(0, offset - counts["send"])
        sql, params = _delivery_failed(statuses, where, _DELIVERY_COLUMNS)
        page = f" ORDER BY message_id LIMIT {int(left)} OFFSET {skip}"
        rows += statuses.all(sql + page, params)
    return [_failed_row(row) for row in rows]


def failed_blocks(
    outcomes: OwnedRows | None, statuses: OwnedRows | None, where: FailedFilter
) -> Iterator[dict]:
    """Every failed number that matches, in :func:`failed_page`'s order, a block at a time."""
    if outcomes is not None and (sql := _send_failed(outcomes, where, _SEND_COLUMNS)):
        for block in outcomes.blocks(sql[0] + " ORDER BY outcome, destination_number", sql[1]):
            yield from map(_failed_row, block)
    if statuses is not None and (sql := _delivery_failed(statuses, where, _DELIVERY_COLUMNS)):
        for block in statuses.blocks(sql[0] + " ORDER BY message_id", sql[1]):
            yield from map(_failed_row, block)


_SEND_COLUMNS = (
    "CASE outcome "
    + " ".join(f"WHEN '{o}' THEN '{s}'" for o, s in FAILED_STAGES.items())
    + " END, destination_number, input_number, error_code, reason"
)
_DELIVERY_COLUMNS = (
    f"'{DELIVERY_STAGE}', destination_number, destination_number, NULL, "
    "CASE WHEN error_message IS NULL OR error_message = '' THEN delivery_status "
    "ELSE delivery_status || ': ' || error_message END"
)


def _send_failed(rows: OwnedRows, where: FailedFilter, columns: str) -> tuple[str, list] | None:
    """The send's failed rows that match, or None when the filter rules them all out."""
    outcomes = list(FAILED_STAGES)
    if where.stage is not None:
        outcomes = [o for o, s in FAILED_STAGES.items() if s == where.stage]
        if not outcomes:
            return None
    conditions, params = [f"outcome IN ({rows.marks(len(outcomes))})"], list(outcomes)
    if where.code:
        if not where.code.isdigit():
            return None
        conditions.append(f"error_code = {rows.placeholder}")
        params.append(int(where.code))
    if where.number:
        conditions.append(
            f"(destination_number LIKE {rows.placeholder} OR input_number LIKE {rows.placeholder})"
        )
        params += [f"%{where.number}%"] * 2
    return rows.select(columns, extra=" AND ".join(conditions)), params


def _delivery_failed(rows: OwnedRows, where: FailedFilter, columns: str) -> tuple[str, list] | None:
    if where.stage not in (None, DELIVERY_STAGE):
        return None
    statuses = list(UNDELIVERED)
    if where.code:
        statuses = [s for s in statuses if s == where.code.upper()]
        if not statuses:
            return None
    conditions, params = [f"delivery_status IN ({rows.marks(len(statuses))})"], list(statuses)
    if where.number:
        conditions.append(f"destination_number LIKE {rows.placeholder}")
        params.append(f"%{where.number}%")
    return rows.select(columns, extra=" AND ".join(conditions)), params


def _failed_row(row: tuple) -> dict:
    stage, number, written, code, description = row
    return {
        "stage": stage,
        "destination_number": number,
        "input_number": written,
        "error_code": None if code is None else int(code),
        "description": description,
    }


def _codes(heads: list) -> list[str]:
    """Each 3-digit head's calling code as text; ``"none"`` for no number or no code."""
    digits = pd.Series([h if isinstance(h, str) else "" for h in heads], dtype=object)
    codes = calling_codes(digits) if len(digits) else []
    return [str(c) if c else "none" for c in codes]


def _aliased(rows: OwnedRows, alias: str, extra: str) -> str:
    """``WHERE`` the owner's key with its columns qualified by ``alias``."""
    key = " AND ".join(f"{alias}.{column} = {rows.placeholder}" for column in rows.key)
    return f"WHERE {key} AND ({extra})"
