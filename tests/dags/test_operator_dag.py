"""A2PSendSmsOperator in real DAG runs (dag.test on a SQLite metadata DB) against the emulator."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from airflow.sdk import DAG, task
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

MESSY = [
    "+44 7443 332212",
    "0044-7443-332213",
    "(+44) 7443.332214",
    447443332215,
    447443332216.0,
    "+44 7443 332212",  # duplicate of the first
    "07443 332217",  # national: valid with default_region GB
    "not a number",
    None,
    "12345",
]


def test_upstream_dataframe_is_sent_exactly_once(voximplant_conn, run_dag):
    with DAG("voxsms_test_dataframe", schedule=None) as dag:

        @task
        def recipients() -> pd.DataFrame:
            # XCom stores DataFrames as Arrow tables: a column holds one type, as read_csv makes.
            phones = [None if v is None else str(v) for v in MESSY]
            return pd.DataFrame({"phone": phones, "name": [f"n{i}" for i in range(len(MESSY))]})

        A2PSendSmsOperator(
            task_id="send",
            recipients=recipients(),
            text="Hello from {{ dag.dag_id }}",
            src_number="VoxDemo",
            default_region="GB",
            batch_size=2,
        )

    tis = run_dag(dag)
    assert tis["send"].state == "success"
    messages = voximplant_conn.state.messages_snapshot()
    sent = Counter(m["destination_number"] for m in messages)
    expected = {f"44744333221{i}" for i in range(2, 8)}
    assert set(sent) == expected and set(sent.values()) == {1}
    assert {m["text"] for m in messages} == {"Hello from voxsms_test_dataframe"}
    assert voximplant_conn.state.stats_snapshot()["max_batch_size"] <= 2

    summary = xcom(tis["send"])
    assert summary["recipients"] == 10 and summary["accepted"] == 6
    assert summary["invalid"] == 3 and summary["duplicates"] == 1
    total = sum(summary[k] for k in ("accepted", "failed", "unknown", "invalid", "duplicates"))
    assert total == summary["recipients"]

    failed = xcom(tis["send"], "failed_numbers")
    assert list(failed.columns) == [
        "destination_number",
        "input_number",
        "error_code",
        "error_description",
        "stage",
    ]
    assert set(failed["stage"]) == {"validation"}
    assert "not a number" in set(failed["input_number"]), "as written"
    assert failed.loc[failed["input_number"] == "not a number", "destination_number"].isna().all()
    accepted = xcom(tis["send"], "accepted_numbers")
    assert sorted(accepted["destination_number"]) == sorted(expected)
    assert set(accepted["message_id"]) == {m["message_id"] for m in messages}


def test_operator_output_as_recipients_and_api_failures(voximplant_conn, run_dag):
    voximplant_conn.state.set_faults(blocked_numbers={"447443332299"})
    with DAG("voxsms_test_output", schedule=None) as dag:

        @task
        def numbers() -> list[str]:
            return ["+447443332298", "+447443332299"]

        upstream = numbers()
        A2PSendSmsOperator(
            task_id="send",
            recipients=upstream.operator.output,
            text="hi",
            src_number="VoxDemo",
        )

    tis = run_dag(dag)
    assert tis["send"].state == "success"
    failed = xcom(tis["send"], "failed_numbers")
    assert failed.to_dict("records") == [
        {
            "destination_number": "447443332299",
            "input_number": "+447443332299",  # as the upstream task wrote it
            "error_code": 509,
            "error_description": "A2P SMS disabled",  # the emulator's answer for code 509
            "stage": "api",
        }
    ]
    assert xcom(tis["send"])["failed"] == 1


def test_fatal_error_fails_the_task_with_a_summary(voximplant_conn, run_dag):
    voximplant_conn.state.set_faults(insufficient_money_after=250)
    with DAG("voxsms_test_money", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=[f"4474400{i:05d}" for i in range(1000)],
            text="hi",
            src_number="VoxDemo",
            max_concurrency=1,
        )

    tis = run_dag(dag)
    assert tis["send"].state == "failed"
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["accepted"] == 300  # the request that crossed 250 was processed whole
    assert stats["api_errors"] == {"127": 1}, "the run stopped at the first 127"
    failed = xcom(tis["send"], "failed_numbers")
    assert len(failed) == 700 and set(failed["error_code"]) == {127}
    assert set(failed["stage"]) == {"not_sent"}, "never reached the API: not refused by it"
    assert len(xcom(tis["send"], "accepted_numbers")) == 300


def test_dry_run_sends_nothing(voximplant_conn, run_dag):
    with DAG("voxsms_test_dry_run", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=[f"4474400{i:05d}" for i in range(250)],
            text="€" * 100,
            src_number="VoxDemo",
            dry_run=True,
        )

    tis = run_dag(dag)
    summary = xcom(tis["send"])
    assert summary["dry_run"] and summary["batches"] == 3 and summary["accepted"] == 0
    assert summary["segments_planned"] == 250 * 2
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


def test_fail_on_failed_ratio_fails_after_pushing_the_outputs(voximplant_conn, run_dag):
    voximplant_conn.state.set_faults(blocked_numbers={"447443332298", "447443332299"})
    with DAG("voxsms_test_failed_ratio", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=["447443332297", "447443332298", "447443332299", "not a number"],
            text="hi",
            src_number="VoxDemo",
            fail_on_failed_ratio=0.5,  # 3 of 4 failed or invalid
            requests_per_second=5,
        )

    tis = run_dag(dag)
    assert tis["send"].state == "failed" and tis["send"].try_number == 1
    failed = xcom(tis["send"], "failed_numbers")
    assert sorted(failed["stage"]) == ["api", "api", "validation"], "outputs were pushed first"
    assert len(voximplant_conn.state.messages_snapshot()) == 1
