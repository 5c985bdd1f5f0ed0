"""Find a send task's campaign in Airflow's metadata: its task instance, XComs and report.

Runs in the api-server (a session of Airflow's metadata database). A send's outcomes are in
its results table when its return value (or, after a failure, its ``accepted_numbers`` XCom)
says where; in its XComs otherwise. Its delivery report is the run's
``A2PSmsDeliveryReportOperator`` task instance with the same map index (the one in the same
task group when there are several, or the one the request names).
"""

from __future__ import annotations

import json
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Any

from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
from airflow_provider_voxsms.ui import xcom_tables
from airflow_provider_voxsms.ui.campaign import CampaignRows
from airflow_provider_voxsms.ui.tables import OwnedRows, dialect_of

SEND_OPERATORS = frozenset({"A2PSendSmsOperator"})
REPORT_OPERATORS = frozenset({"A2PSmsDeliveryReportOperator"})
SEND_XCOMS = ("accepted_numbers", "failed_numbers", "unknown_numbers", "deferred_numbers")


@dataclass(frozen=True)
class TaskKey:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


def task_instance(session, key: TaskKey) -> dict | None:
    """The task instance's operator and state, or None when there is none."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    row = session.execute(
        select(TI.operator, TI.state, TI.custom_operator_name).where(
            TI.dag_id == key.dag_id,
            TI.run_id == key.run_id,
            TI.task_id == key.task_id,
            TI.map_index == key.map_index,
        )
    ).first()
    if row is None:
        return None
    return {
        "dag_id": key.dag_id,
        "run_id": key.run_id,
        "task_id": key.task_id,
        "map_index": key.map_index,
        "operator": row.operator,
        "operator_label": row.custom_operator_name or row.operator,  # "@task" for a @task
        "state": None if row.state is None else str(row.state),
    }


def send_tasks(session, dag_id: str, run_id: str) -> list[dict]:
    """A DAG run's send task instances, with their return values (None while absent)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    rows = session.execute(
        select(TI.task_id, TI.map_index, TI.state)
        .where(TI.dag_id == dag_id, TI.run_id == run_id, TI.operator.in_(SEND_OPERATORS))
        .order_by(TI.task_id, TI.map_index)
    ).all()
    found = []
    for task_id, map_index, state in rows:
        key = TaskKey(dag_id, run_id, task_id, map_index)
        found.append(
            {
                "task_id": task_id,
                "map_index": map_index,
                "state": None if state is None else str(state),
                "summary": xcom(session, key, "return_value"),
            }
        )
    return found


def report_task(session, key: TaskKey) -> TaskKey | None:
    """The delivery report that follows the send ``key`` (see the module's docstring)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    task_ids = session.scalars(
        select(TI.task_id).where(
            TI.dag_id == key.dag_id,
            TI.run_id == key.run_id,
            TI.map_index == key.map_index,
            TI.operator.in_(REPORT_OPERATORS),
        )
    ).all()
    if not task_ids:
        return None
    group = key.task_id.rpartition(".")[0]
    same_group = [t for t in task_ids if t.rpartition(".")[0] == group]
    chosen = sorted(same_group or task_ids)[0]
    return TaskKey(key.dag_id, key.run_id, chosen, key.map_index)


def xcom(session, key: TaskKey, name: str) -> Any:
    """An XCom's value as the task pushed it (DataFrames included), or None."""
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from sqlalchemy import select

    raw = session.scalar(
        select(XComModel.value).where(
            XComModel.dag_id == key.dag_id,
            XComModel.run_id == key.run_id,
            XComModel.task_id == key.task_id,
            XComModel.map_index == key.map_index,
            XComModel.key == name,
        )
    )
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            return raw
    return None if raw is None else deserialize(raw)


def campaign_rows(session, key: TaskKey, report: TaskKey | None, stack: ExitStack) -> CampaignRows:
    """Open the send's and its report's rows (connections are closed with ``stack``)."""
    summary = xcom(session, key, "return_value")
    connections: dict[str, Any] = {}
    location = _results_location(session, key, summary)
    if location is not None:
        key_columns = CAMPAIGN_COLUMNS if "campaign_id" in location else TASK_COLUMNS
        outcomes = _table_rows(location, key_columns, connections, stack)
        outcomes_from = "table"
    else:
        frames = {name: xcom(session, key, name) for name in SEND_XCOMS}
        memory = stack.enter_context(closing(xcom_tables.memory_db()))
        outcomes = (
            xcom_tables.outcome_rows(memory, frames)
            if any(f is not None for f in frames.values())
            else None
        )
        outcomes_from = "xcom" if outcomes is not None else None
    rows = CampaignRows(summary, outcomes, outcomes_from)
    if report is None:
        return rows
    rows.report = xcom(session, report, "return_value")
    rows.report_task = report.task_id
    from airflow_provider_voxsms.operators.delivery_report import STATUS_TABLE_KEY

    statuses = xcom(session, report, STATUS_TABLE_KEY)  # rows in XCom and a table: the table
    if statuses is None:
        statuses = xcom(session, report, "delivery_status")
    if isinstance(statuses, dict) and "table" in statuses:
        rows.statuses = _table_rows(statuses, TASK_COLUMNS, connections, stack)
        rows.statuses_from = "table"
    elif statuses is not None:
        memory = stack.enter_context(closing(xcom_tables.memory_db()))
        rows.statuses = xcom_tables.status_rows(memory, statuses)
        rows.statuses_from = "xcom"
    return rows


def _results_location(session, key: TaskKey, summary: Any) -> dict | None:
    if isinstance(summary, dict) and isinstance(summary.get("results"), dict):
        return summary["results"]
    accepted = xcom(session, key, "accepted_numbers")  # a location too, after a failed send
    if isinstance(accepted, dict) and "table" in accepted:
        return {k: v for k, v in accepted.items() if k not in ("outcomes", "rows")}
    return None


def _table_rows(location: dict, key_columns, connections: dict, stack: ExitStack) -> OwnedRows:
    """A location's rows, on one connection per connection id for the whole request."""
    conn_id = location["conn_id"]
    if conn_id not in connections:
        hook = db_hook(conn_id)
        conn = stack.enter_context(closing(hook.get_conn()))
        connections[conn_id] = (conn, hook.placeholder)
    conn, placeholder = connections[conn_id]
    owner = {column: location[column] for column in key_columns}
    return OwnedRows(conn, placeholder, dialect_of(conn), location["table"], owner)


def db_hook(conn_id: str):
    """A common-sql hook of a connection, looked up as the api-server looks connections up."""
    from airflow.models.connection import Connection
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    hook = Connection.get_connection_from_secrets(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(f"connection {conn_id!r} is not a common-sql connection")
    return hook
