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

from airflow_provider_voxsms.sms.delivery import UNDELIVERED_STATUSES
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
# as calling codes are prefix-free and at most three digits long.
_HEAD = (
    "CASE WHEN destination_number LIKE '+%' THEN SUBSTR(destination_number, 2, 3) "
    "ELSE SUBSTR(destination_number, 1, 3) END"
)


def outcome_counts(outcomes: OwnedRows) -> dict[str, int]:
    """Rows per outcome."""
    rows = outcomes.all(outcomes.select("outcome, COUNT(*)", tail="GROUP BY outcome"))
    return {outcome: int(count) for outcome, count in rows}


def reasons(outcomes: OwnedRows, limit: int = 50) -> dict[str, list[dict]]:
    """Per outcome other than accepted: its (error code, reason) pairs, most frequent first."""
    sql = outcomes.select(
        "outcome, error_code, reason, COUNT(*) AS n",
        extra="outcome <> 'accepted'",
        tail="GROUP BY outcome, error_code, reason ORDER BY n DESC",
    )
    found: dict[str, list[dict]] = {}
    for outcome, code, reason, count in outcomes.all(sql):
        kept = found.setdefault(outcome, [])
        if len(kept) < limit:
            code = None if code is None else int(code)
            kept.append({"error_code": code, "reason": reason, "count": int(count)})
    return found


def by_country(outcomes: OwnedRows, statuses: OwnedRows | None) -> list[dict]:
    """Rows, accepted and failed per calling code (``"none"`` for rows without a number),
    and delivered where the statuses are known; largest first."""
    sql = outcomes.select(
        f"{_HEAD} AS head, COUNT(*), "
        "SUM(CASE WHEN outcome = 'accepted' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN outcome IN ({_quoted(FAILED_STAGES)}) THEN 1 ELSE 0 END)",
        tail=f"GROUP BY {_HEAD}",
    )
    table: dict[str, dict] = {}
    heads = outcomes.all(sql)
    codes = _codes([head for head, *_ in heads])
    for (_, rows, accepted, failed), code in zip(heads, codes, strict=True):
        row = table.setdefault(code, {"country_code": code, "recipients": 0, "accepted": 0})
        row.setdefault("failed", 0)
        row["recipients"] += int(rows)
        row["accepted"] += int(accepted or 0)
        row["failed"] += int(failed or 0)
    if statuses is not None:
        sql = statuses.select(
            f"{_HEAD}, COUNT(*)", extra="delivery_status = 'DELIVERED'", tail=f"GROUP BY {_HEAD}"
        )
        delivered = statuses.all(sql)
        for (_, count), code in zip(delivered, _codes([h for h, _ in delivered]), strict=True):
            row = table.setdefault(
                code, {"country_code": code, "recipients": 0, "accepted": 0, "failed": 0}
            )
            row["delivered"] = row.get("delivered", 0) + int(count)
        for row in table.values():
            row.setdefault("delivered", 0)
    return sorted(table.values(), key=lambda r: (-r["recipients"], r["country_code"]))


def by_variant(outcomes: OwnedRows, statuses: OwnedRows | None) -> list[dict]:
    """People (copies aside) and accepted per variant, and delivered when the statuses are
    on the same connection (a join on the message id); empty without variants."""
    sql = outcomes.select(
        "variant, COUNT(*), SUM(CASE WHEN outcome = 'accepted' THEN 1 ELSE 0 END)",
        extra="variant IS NOT NULL AND outcome <> 'duplicate'",
        tail="GROUP BY variant ORDER BY variant",
    )
    variants = {
        name: {"variant": name, "recipients": int(n), "accepted": int(accepted or 0)}
        for name, n, accepted in outcomes.all(sql)
    }
    if variants and statuses is not None and statuses.conn is outcomes.conn:
        o, s = outcomes, statuses
        sql = (
            f"SELECT o.variant, COUNT(*) FROM {o.table} o JOIN {s.table} s "
            "ON s.message_id = o.message_id "
            + _aliased(o, "o", "o.variant IS NOT NULL AND o.outcome = 'accepted'")
            + " AND "
            + _aliased(s, "s", "s.delivery_status = 'DELIVERED'").removeprefix("WHERE ")
            + " GROUP BY o.variant"
        )
        with_statuses = OwnedRows(o.conn, o.placeholder, o.dialect, o.table, {**o.key})
        params = tuple(s.key.values())
        for name, count in with_statuses.all(sql, params):
            if name in variants:
                variants[name]["delivered"] = int(count)
        for row in variants.values():
            row.setdefault("delivered", 0)
    return list(variants.values())


def status_counts(statuses: OwnedRows) -> dict:
    """Messages per delivery status, and the fragments and cost the history reported."""
    sql = statuses.select(
        "delivery_status, COUNT(*), SUM(fragments), SUM(cost), COUNT(cost)",
        tail="GROUP BY delivery_status",
    )
    counts, fragments, cost, costed = {}, 0, 0.0, 0
    for status, n, frags, money, with_cost in statuses.all(sql):
        counts[status] = int(n)
        fragments += int(frags or 0)
        cost += float(money or 0.0)
        costed += int(with_cost or 0)
    return {
        "statuses": counts,
        "fragments": fragments,
        "cost": round(cost, 6) if costed else None,
    }


def final_by_minute(statuses: OwnedRows) -> list[dict]:
    """Messages that reached a final status, by whole minutes from sending (the history's
    ``processing_date``) to the report's row (``checked_at``); cumulative ``share`` of all
    followed messages. Empty when the rows carry no times (statuses from XCom)."""
    if statuses.dialect == "sqlite":
        minutes = "CAST((julianday(checked_at) - julianday(processing_date)) * 1440 AS INTEGER)"
    else:
        minutes = (
            "CAST(FLOOR(EXTRACT(EPOCH FROM (checked_at - CAST(processing_date AS TIMESTAMP)))"
            " / 60) AS INTEGER)"
        )
    (total,) = statuses.all(statuses.select("COUNT(*)"))[0]
    sql = statuses.select(
        f"{minutes} AS m, COUNT(*)",
        extra="delivery_status <> 'pending' AND checked_at IS NOT NULL "
        "AND processing_date IS NOT NULL",
        tail=f"GROUP BY {minutes} ORDER BY m",
    )
    curve, done = [], 0
    for minute, count in statuses.all(sql):
        done += int(count)
        share = done / total if total else 0.0
        curve.append({"minute": max(0, int(minute)), "final": done, "share": round(share, 4)})
    return curve


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
) -> list[dict]:
    """One page of failed numbers: the send's first (by outcome and number), then the
    delivery report's. Rows: stage, destination_number, input_number, error_code,
    description."""
    counts = failed_count(outcomes, statuses, where)
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


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _aliased(rows: OwnedRows, alias: str, extra: str) -> str:
    """``WHERE`` the owner's key with its columns qualified by ``alias``."""
    key = " AND ".join(f"{alias}.{column} = {rows.placeholder}" for column in rows.key)
    return f"WHERE {key} AND ({extra})"
