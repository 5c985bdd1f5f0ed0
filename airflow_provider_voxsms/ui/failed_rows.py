"""The campaign page's failed numbers: how many match a filter, a page of them, the CSV.

A send's failed numbers are its rows of the outcomes in :data:`FAILED_STAGES`, listed by
outcome then number; a report's are its undelivered statuses, by message id. Counts come from
what the tasks stored when they finished (``storage.summary``) unless the filter names digits;
a page reads one outcome at a time through the partial indexes that hold only failed rows
(``storage.schema``: ``failed``, ``undelivered``), so its first page costs the same at 4M rows
as at 4,000. Each query repeats its index's condition word for word: SQLite uses a partial
index only then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from airflow_provider_voxsms.sms.delivery import UNDELIVERED_STATUSES
from airflow_provider_voxsms.storage.schema import DELIVERY_STATUS, RESULTS
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
    """How many failed numbers match, from the send and from the delivery report: from the
    stored counts unless the filter names digits (those are counted over the rows)."""
    counts = {"send": 0, "delivery": 0}
    if outcomes is not None:
        counts["send"] = sum(_send_counts(outcomes, where).values())
    if statuses is not None:
        counts["delivery"] = _delivery_count(statuses, where)
    return counts


def _send_counts(rows: OwnedRows, where: FailedFilter) -> dict[str, int]:
    """The send's failed numbers that match, per outcome."""
    found = _send_failed(rows, where, "outcome, COUNT(*)")
    if found is None:
        return {}
    stored = rows.stored()
    if stored is None or where.number:  # counted through the index of the failed numbers
        sql, params = found
        return {outcome: int(n) for outcome, n in rows.all(sql + " GROUP BY outcome", params)}
    outcomes, code = _stage_outcomes(where), int(where.code) if where.code else None
    counts: dict[str, int] = {}
    for _, outcome, _, error_code, _, n in stored["send"]:
        if outcome in outcomes and (code is None or error_code == code):
            counts[outcome] = counts.get(outcome, 0) + int(n)
    return counts


def _delivery_count(rows: OwnedRows, where: FailedFilter) -> int:
    """The report's failed deliveries that match."""
    found = _delivery_failed(rows, where, "COUNT(*)")
    if found is None:
        return 0
    stored = rows.stored()
    if stored is None or where.number:
        return int(rows.all(*found)[0][0])
    statuses = _undelivered(where)
    return sum(int(n) for status, _, n, *_ in stored["status"] if status in statuses)


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
    if outcomes is not None and offset < counts["send"]:
        rows += _send_page(outcomes, where, int(offset), int(limit))
    left = limit - len(rows)
    if left > 0 and counts["delivery"]:
        skip = max(0, offset - counts["send"])
        sql, params = _delivery_failed(statuses, where, _DELIVERY_COLUMNS)
        page = f" ORDER BY message_id LIMIT {int(left)} OFFSET {skip}"
        rows += statuses.all(sql + page, params)
    return [_failed_row(row) for row in rows]


def _send_page(rows: OwnedRows, where: FailedFilter, offset: int, limit: int) -> list[tuple]:
    """The send's part of a page, one outcome at a time in their order, each through the
    index (campaign, outcome, number): the page reads its own rows only, never the campaign's.
    (One ``outcome IN (...)`` query would make PostgreSQL sort every failed number.)"""
    page: list[tuple] = []
    start = 0
    for outcome, n in sorted(_send_counts(rows, where).items()):
        if len(page) == limit:
            break
        if offset < start + n:
            sql, params = _send_failed(rows, where, _SEND_COLUMNS, only=outcome)
            skip = max(0, offset - start)
            tail = f" ORDER BY destination_number LIMIT {limit - len(page)} OFFSET {skip}"
            page += rows.all(sql + tail, params)
        start += n
    return page


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


def _stage_outcomes(where: FailedFilter) -> list[str]:
    """The outcomes of the filter's stage (all failed ones without a stage)."""
    if where.stage is None:
        return list(FAILED_STAGES)
    return [o for o, s in FAILED_STAGES.items() if s == where.stage]


def _send_failed(
    rows: OwnedRows, where: FailedFilter, columns: str, only: str | None = None
) -> tuple[str, list] | None:
    """The send's failed rows that match (of outcome ``only``, when given), or None when the
    filter rules them all out."""
    outcomes = [only] if only else _stage_outcomes(where)
    if not outcomes:
        return None
    # The failed-numbers index's own condition, word for word, so that SQLite uses it too.
    conditions, params = [RESULTS.partial["failed"]], []
    if len(outcomes) < len(FAILED_STAGES):
        conditions.append(f"outcome IN ({rows.marks(len(outcomes))})")
        params += outcomes
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
    statuses = _undelivered(where)
    if not statuses:
        return None
    conditions, params = [DELIVERY_STATUS.partial["undelivered"]], []  # its index's, as above
    if len(statuses) < len(UNDELIVERED):
        conditions.append(f"delivery_status IN ({rows.marks(len(statuses))})")
        params += statuses
    if where.number:
        conditions.append(f"destination_number LIKE {rows.placeholder}")
        params.append(f"%{where.number}%")
    return rows.select(columns, extra=" AND ".join(conditions)), params


def _undelivered(where: FailedFilter) -> list[str]:
    """The undelivered statuses the filter keeps (none for a stage of the send)."""
    if where.stage not in (None, DELIVERY_STAGE):
        return []
    if where.code:
        return [s for s in UNDELIVERED if s == where.code.upper()]
    return list(UNDELIVERED)


def _failed_row(row: tuple) -> dict:
    stage, number, written, code, description = row
    return {
        "stage": stage,
        "destination_number": number,
        "input_number": written,
        "error_code": None if code is None else int(code),
        "description": description,
    }
