"""A task's XCom frames as rows in an in-memory SQLite database, for the same queries.

A send without ``results_conn_id`` keeps its outcomes in XComs (``accepted_numbers``,
``failed_numbers``, ``unknown_numbers``, ``deferred_numbers``), a delivery report without
``report_conn_id`` its statuses (``delivery_status``). XComs are small by design (the send
warns past 100,000 rows), so loading them into SQLite costs little, and the page then runs
the one set of queries (:mod:`.queries`) whatever the source. Rows XComs never carry
(duplicates, suppressed, held out) are counted from the task's return value instead.
"""

from __future__ import annotations

import sqlite3

import pandas as pd

from airflow_provider_voxsms.ui.failed_rows import FAILED_STAGES
from airflow_provider_voxsms.ui.tables import OwnedRows

OWNER = {"owner": "xcom"}
_OUTCOME_OF_STAGE = {stage: outcome for outcome, stage in FAILED_STAGES.items()}
_OUTCOMES = ("destination_number", "input_number", "outcome", "message_id", "error_code")
_OUTCOMES += ("reason", "variant")
_STATUSES = ("message_id", "destination_number", "delivery_status", "error_message")
_STATUSES += ("fragments", "cost", "processing_date", "checked_at")


def memory_db() -> sqlite3.Connection:
    """A new in-memory database (one per request: nothing is shared between threads)."""
    return sqlite3.connect(":memory:", check_same_thread=False)


def outcome_rows(conn: sqlite3.Connection, frames: dict[str, pd.DataFrame | None]) -> OwnedRows:
    """The send's output XComs (``key -> frame``; None when absent) as outcome rows."""
    parts = []
    if (accepted := frames.get("accepted_numbers")) is not None:
        parts.append(_frame(accepted, outcome="accepted"))
    if (failed := frames.get("failed_numbers")) is not None and len(failed):
        rows = _frame(failed, outcome=None)
        rows["outcome"] = failed["stage"].map(_OUTCOME_OF_STAGE).fillna("failed").to_numpy()
        rows["reason"] = failed["error_description"].to_numpy()
        parts.append(rows)
    if (unknown := frames.get("unknown_numbers")) is not None:
        parts.append(_frame(unknown, outcome="unknown"))
    if (deferred := frames.get("deferred_numbers")) is not None:
        parts.append(_frame(deferred, outcome="deferred"))
    rows = pd.concat(parts, ignore_index=True) if parts else _frame(pd.DataFrame(), None)
    return _load(conn, "outcomes", rows[list(_OUTCOMES)], _OUTCOMES)


def status_rows(conn: sqlite3.Connection, statuses: pd.DataFrame) -> OwnedRows:
    """A delivery report's ``delivery_status`` XCom as status rows (no ``checked_at``)."""
    rows = statuses.copy()
    rows["checked_at"] = None
    for column in _STATUSES:
        if column not in rows.columns:
            rows[column] = None
    return _load(conn, "statuses", rows[list(_STATUSES)], _STATUSES)


def _frame(frame: pd.DataFrame, outcome: str | None) -> pd.DataFrame:
    """``frame``'s columns that outcome rows have, the others empty."""
    rows = pd.DataFrame(index=frame.index)
    for column in _OUTCOMES:
        rows[column] = frame[column].to_numpy(dtype=object) if column in frame else None
    if outcome is not None:
        rows["outcome"] = outcome
    return rows


def _load(conn: sqlite3.Connection, table: str, rows: pd.DataFrame, columns) -> OwnedRows:
    conn.execute(f"CREATE TABLE {table} (owner TEXT, {', '.join(columns)})")
    values = rows.astype(object).where(rows.notna(), None).itertuples(index=False, name=None)
    marks = ", ".join("?" * (len(columns) + 1))
    conn.executemany(
        f"INSERT INTO {table} VALUES ({marks})",
        ((OWNER["owner"], *(_plain(v) for v in row)) for row in values),
    )
    return OwnedRows(conn, "?", "sqlite", table, OWNER)


def _plain(value):
    """numpy and pandas scalars as the Python values sqlite3 binds."""
    return value.item() if hasattr(value, "item") else value
