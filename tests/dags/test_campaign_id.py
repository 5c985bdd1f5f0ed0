"""A campaign is a task's interval, not one DAG run: real DAG runs (``dag.test``) against the
emulator, with the send ledger and the results table on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.storage.results import read_outcomes

NUMBERS = [f"44770090{i:04d}" for i in range(30)]
JAN_5, JAN_6 = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)


def received(voximplant_conn) -> Counter:
    """How many SMS the emulator received per number."""
    return Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())


def delete_run(dag_id: str, run_id: str) -> None:
    """What a user does before triggering a run for the same date again: delete the run."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(
            delete(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        )
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


def test_re_running_an_interval_resumes_its_campaign_and_the_next_interval_sends_again(
    voximplant_conn, voxsms_db, run_dag
):
    with DAG("voxsms_test_campaign_id", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=NUMBERS,
            text="Your order has shipped",
            src_number="VoxDemo",
            ledger_conn_id=voxsms_db,
            results_conn_id=voxsms_db,
        )

    first = run_dag(dag, logical_date=JAN_5)["send"]
    assert first.state == "success"
    assert received(voximplant_conn) == dict.fromkeys(NUMBERS, 1)

    cleared = run_dag(dag, logical_date=JAN_5)["send"]  # `dags test` again: the run cleared
    assert cleared.state == "success" and cleared.run_id == first.run_id
    assert xcom(cleared)["earlier"] == len(NUMBERS), "reported from the ledger, not sent"

    delete_run(dag.dag_id, first.run_id)  # replaced: a new run for the same date
    replaced = run_dag(dag, logical_date=JAN_5, run_after=JAN_5 + timedelta(hours=6))["send"]
    assert replaced.state == "success" and replaced.run_id != first.run_id
    assert received(voximplant_conn) == dict.fromkeys(NUMBERS, 1), "nobody twice"
    summary = xcom(replaced)
    assert (summary["earlier"], summary["accepted"]) == (len(NUMBERS), len(NUMBERS))
    where = summary["results"]
    assert (where["campaign_id"], where["run_id"]) == (JAN_5.isoformat(), replaced.run_id)
    assert len(read_outcomes(where)) == len(NUMBERS), "the campaign's rows, replaced"

    next_day = run_dag(dag, logical_date=JAN_6)["send"]
    assert next_day.state == "success"
    assert received(voximplant_conn) == dict.fromkeys(NUMBERS, 2), "a new campaign"
    assert xcom(next_day)["earlier"] == 0

    no_date = run_dag(dag, logical_date=None, run_after=JAN_6 + timedelta(hours=1))["send"]
    assert no_date.state == "success"
    assert received(voximplant_conn) == dict.fromkeys(NUMBERS, 3), "its run is its campaign"
    assert xcom(no_date)["results"]["campaign_id"] == no_date.run_id
