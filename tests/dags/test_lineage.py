"""OpenLineage events of a campaign in a real DAG run: the OpenLineage provider with its file
transport, recipients and opt-outs read from PostgreSQL, results and delivery statuses written
there, and common-sql's ``SQLExecuteQueryOperator`` on the same connection as the reference for
how each table is named.

The DAG runs in a fresh interpreter: OpenLineage's listener is set up once per process, from
the configuration it finds then (this suite's own process has no transport configured, so
lineage is off in every other test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAG_ID = "voxsms_test_lineage"
TABLES = ("lineage_recipients", "lineage_opt_outs", "voxsms_results_outcomes")
NUMBERS = [f"4477009001{i:02d}" for i in range(5)]
HERE = Path(__file__).resolve().parent


def campaign_dag(conn_id: str):
    """Send to ``lineage_recipients`` minus ``lineage_opt_outs``, report the deliveries, then
    query all four tables with common-sql's operator (the reference)."""
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
    from airflow.sdk import DAG

    from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
    from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator

    with DAG(DAG_ID, schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello {first_name}",
            recipients_sql="SELECT phone, first_name FROM lineage_recipients ORDER BY phone",
            recipients_conn_id=conn_id,
            suppression_sql="SELECT phone FROM lineage_opt_outs",
            suppression_conn_id=conn_id,
            results_conn_id=conn_id,
            ledger_conn_id=conn_id,
        )
        report = A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=send.output,
            src_number="VoxDemo",
            report_conn_id=conn_id,
            timeout=5,
            poll_interval=0.3,
            max_poll_interval=0.6,
        )
        reference = SQLExecuteQueryOperator(
            task_id="reference",
            conn_id=conn_id,
            sql=[
                "SELECT phone FROM lineage_recipients",
                "SELECT phone FROM lineage_opt_outs",
                "SELECT outcome FROM voxsms_results_outcomes",
                "SELECT delivery_status FROM sms_delivery_status",
            ],
        )
        send >> report >> reference
    return dag


def main() -> None:  # in the subprocess
    from dag_runs import run_dag_once

    states = {k: ti.state for k, ti in run_dag_once(campaign_dag("voxsms_db")).items()}
    print("STATES", json.dumps(states))


@pytest.fixture
def campaign_tables(postgres_uri, monkeypatch) -> str:
    from airflow_provider_voxsms.storage.sql import db_api_hook

    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", postgres_uri)
    hook = db_api_hook("voxsms_db")
    for table in (*TABLES, "sms_delivery_status"):
        hook.run(f"DROP TABLE IF EXISTS {table}")
    hook.run("CREATE TABLE lineage_recipients (phone TEXT, first_name TEXT)")
    hook.insert_rows("lineage_recipients", [(f"+{n}", f"P{n[-1]}") for n in NUMBERS])
    hook.run("CREATE TABLE lineage_opt_outs (phone TEXT)")
    hook.insert_rows("lineage_opt_outs", [(f"+{NUMBERS[0]}",)])
    return postgres_uri


def complete_events(path: Path) -> dict[str, dict]:
    """Each task's COMPLETE event, by task id."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        e["job"]["name"].removeprefix(f"{DAG_ID}."): e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"].startswith(f"{DAG_ID}.")
    }


def names(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


@pytest.mark.postgres
def test_events_name_the_campaigns_tables_as_common_sql_does(
    campaign_tables, voximplant_conn, airflow_db, tmp_path
):
    voximplant_conn.state.set_faults(delivery_queued_s=0.2, delivery_dispatched_s=0.2)
    events_file = tmp_path / "events.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "voxsms_test",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
    }
    run = subprocess.run(
        [sys.executable, "-c", "import test_lineage; test_lineage.main()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines()[::-1] if x.startswith("STATES "))
    states = json.loads(line.removeprefix("STATES "))
    assert states == {"send": "success", "delivery": "success", "reference": "success"}, states

    events = complete_events(events_file)
    reference = names(events["reference"]["inputs"])
    by_table = {name.rsplit(".", 1)[-1]: (ns, name) for ns, name in reference}
    port = campaign_tables.rsplit(":", 1)[1].split("/")[0]
    assert set(by_table) == {*TABLES, "sms_delivery_status"}, reference
    assert {ns for ns, _ in reference} == {f"postgres://127.0.0.1:{port}"}

    send = events["send"]
    assert names(send["inputs"]) == {by_table["lineage_recipients"], by_table["lineage_opt_outs"]}
    assert names(send["outputs"]) == {by_table["voxsms_results_outcomes"]}
    counts = send["run"]["facets"]["voxsmsSummary"]
    assert (counts["recipients"], counts["suppressed"], counts["accepted"]) == (5, 1, 4)

    delivery = events["delivery"]
    assert names(delivery["inputs"]) == {by_table["voxsms_results_outcomes"]}
    assert names(delivery["outputs"]) == {by_table["sms_delivery_status"]}
    assert delivery["run"]["facets"]["voxsmsSummary"]["messages"] == 4

    every = [d["name"] for e in events.values() for d in (*e["inputs"], *e["outputs"])]
    assert not [n for n in every if "ledger" in n], "the send ledger stays out of lineage"
    # the schema facet, as the reference gets it from the information schema
    fields = {f["name"] for f in send["inputs"][0]["facets"]["schema"]["fields"]}
    assert fields in ({"phone", "first_name"}, {"phone"})
