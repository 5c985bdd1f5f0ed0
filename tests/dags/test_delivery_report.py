"""A2PSmsDeliveryReportOperator in real DAG runs against the emulator's delivery lifecycle:
worker polling and deferral (``dag.test()`` runs the trigger inline), the table, re-runs."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG, XComArg, task
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.model import FAILED_COLUMNS
from airflow_provider_voxsms.storage.sql import db_api_hook
from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger

NUMBERS = [f"4474433322{i:02d}" for i in range(10, 20)]  # last digits 0..9
BY_DIGIT = {"3": "FAILED", "4": "EXPIRED", "5": "REJECTED", "6": "ABORTED", "7": "UNKNOWN"}
# The emulator's truth: digit 9 never becomes final, so it is pending at the timeout.
TRUTH = {n: BY_DIGIT.get(n[-1], "pending" if n[-1] == "9" else "DELIVERED") for n in NUMBERS}


@pytest.fixture
def lifecycle(voximplant_conn):
    spec = ",".join(f"{d}={s}" for d, s in BY_DIGIT.items()) + ",9=NEVER"
    voximplant_conn.state.set_faults(
        delivery_queued_s=0.4, delivery_dispatched_s=0.4, delivery_by_last_digit=spec
    )
    return voximplant_conn


def campaign(dag_id: str, *, deferrable: bool, via_task_id: bool = False, **report) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send", recipients=NUMBERS, text="Hello", src_number="VoxDemo"
        )
        follow = (
            {"send_task_id": "send"}
            if via_task_id
            else {"messages": XComArg(send, key="accepted_numbers")}
        )
        report_task = A2PSmsDeliveryReportOperator(
            task_id="delivery",
            src_number="VoxDemo",
            timeout=4,
            poll_interval=0.3,
            max_poll_interval=0.6,
            deferrable=deferrable,
            **follow,
            **report,
        )
        send >> report_task
    return dag


def check_outputs(ti) -> None:
    summary = xcom(ti)
    assert summary == {
        "messages": 10,
        "delivered": 4,
        "failed": 1,
        "expired": 1,
        "rejected": 1,
        "aborted": 1,
        "unknown": 1,
        "pending": 1,
        "fragments": 10,
        "cost": summary["cost"],
        "duration_s": summary["duration_s"],
    }
    assert summary["cost"] == pytest.approx(10 * 0.0325)
    statuses = xcom(ti, "delivery_status")
    assert dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == (
        TRUTH
    )
    failed = xcom(ti, "failed_numbers")
    assert list(failed.columns) == FAILED_COLUMNS and set(failed["stage"]) == {"delivery"}
    assert sorted(failed["destination_number"]) == sorted(
        n for n, s in TRUTH.items() if s not in ("DELIVERED", "pending")
    )
    row = failed[failed["destination_number"] == NUMBERS[3]].iloc[0]
    assert row["error_description"] == "FAILED: Absent subscriber"


def table_rows(conn_id: str, dag_id: str) -> list[tuple]:
    hook = db_api_hook(conn_id)
    return hook.get_records(
        "SELECT destination_number, delivery_status, task_id, map_index FROM sms_delivery_status "
        f"WHERE dag_id = {hook.placeholder} ORDER BY destination_number",
        parameters=(dag_id,),
    )


def test_worker_polling_reports_the_emulators_truth_and_writes_the_table(
    lifecycle, run_dag, voxsms_db
):
    dag = campaign(
        "voxsms_test_delivery_sync", deferrable=False, via_task_id=True, report_conn_id=voxsms_db
    )
    tis = run_dag(dag)
    assert tis["delivery"].state == "success"
    check_outputs(tis["delivery"])
    rows = table_rows(voxsms_db, dag.dag_id)
    assert [(r[0], r[1]) for r in rows] == sorted(TRUTH.items())
    assert {r[2:] for r in rows} == {("delivery", -1)}

    run_dag(dag)  # a re-run of the same DAG run replaces the task instance's rows
    assert len(table_rows(voxsms_db, dag.dag_id)) == len(NUMBERS)


def test_deferred_polling_reports_the_same_truth(lifecycle, run_dag, monkeypatch):
    runs = []
    original = A2PSmsDeliveryTrigger.run

    def counted(self):
        runs.append(self.serialize()[1])
        return original(self)

    monkeypatch.setattr(A2PSmsDeliveryTrigger, "run", counted)
    tis = run_dag(campaign("voxsms_test_delivery_deferred", deferrable=True))
    assert tis["delivery"].state == "success"
    assert len(runs) == 1, "the task deferred to the trigger"
    assert len(str(runs[0])) < 1000, "small serialised state, no id list"
    # The trigger read the ids from the XCom it names; they are exactly the send's messages.
    assert runs[0]["ids_xcom"]["key"] == "followed_message_ids"
    followed = delivery.decode_ids(xcom(tis["delivery"], "followed_message_ids"))
    assert followed == sorted(xcom(tis["send"], "accepted_numbers")["message_id"])
    check_outputs(tis["delivery"])


def test_throttling_during_polling_is_survived(lifecycle, run_dag):
    lifecycle.state.set_faults(http_429_rate=0.3, retry_after_s=0, seed=3)
    tis = run_dag(campaign("voxsms_test_delivery_throttled", deferrable=True))
    assert tis["delivery"].state == "success"
    check_outputs(tis["delivery"])
    assert lifecycle.state.stats_snapshot()["http_faults"].get("429", 0) > 0


def test_fail_on_undelivered_ratio_fails_after_the_outputs(lifecycle, run_dag):
    tis = run_dag(
        campaign("voxsms_test_delivery_ratio", deferrable=False, fail_on_undelivered_ratio=0.5)
    )
    assert tis["delivery"].state == "failed"
    assert len(xcom(tis["delivery"], "delivery_status")) == len(NUMBERS)


def test_the_trigger_is_registered_with_airflow():
    import json
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "triggers", "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=True,
    ).stdout
    ours = [
        row["class"] for row in json.loads(out) if row["package_name"] == "airflow-provider-voxsms"
    ]
    assert ours == ["airflow_provider_voxsms.triggers.delivery"]


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_stopping_error_fails_at_once_instead_of_polling_to_the_timeout(
    voximplant_conn, run_dag, monkeypatch, credentials_json, deferrable
):
    import json
    import time

    conn = json.loads(voximplant_conn.connection_json())
    conn["password"] = credentials_json  # a key the emulator does not know: error 433
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_BAD", json.dumps(conn))
    with DAG(f"voxsms_test_delivery_stop_{deferrable}", schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send", recipients=NUMBERS, text="Hello", src_number="VoxDemo"
        )
        A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=XComArg(send, key="accepted_numbers"),
            voximplant_conn_id="voximplant_bad",
            timeout=120,
            poll_interval=1,
            deferrable=deferrable,
        )
    started = time.monotonic()
    tis = run_dag(dag)
    assert tis["delivery"].state == "failed"
    assert time.monotonic() - started < 60


def test_mapped_sends_followed_together_and_per_shard(lifecycle, run_dag):
    """``send_task_id`` follows every map index; a per-shard report maps over the shards'
    ``accepted_numbers`` (Airflow maps over return values only, hence the small task)."""
    shards = [NUMBERS[:5], NUMBERS[5:]]
    with DAG("voxsms_test_delivery_mapped", schedule=None) as dag:
        send = A2PSendSmsOperator.partial(
            task_id="send", text="Hello", src_number="VoxDemo"
        ).expand(recipients=shards)

        @task
        def accepted_per_shard(ti=None) -> list:
            return list(ti.xcom_pull(task_ids="send", key="accepted_numbers"))

        together = A2PSmsDeliveryReportOperator(
            task_id="together", send_task_id="send", timeout=4, poll_interval=0.3
        )
        A2PSmsDeliveryReportOperator.partial(
            task_id="per_shard", timeout=4, poll_interval=0.3, deferrable=True
        ).expand(messages=send >> accepted_per_shard())
        send >> together
    tis = run_dag(dag)
    check_outputs(tis["together"])
    for index, shard in enumerate(shards):
        statuses = xcom(tis[("per_shard", index)], "delivery_status")
        got = dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True))
        assert got == {n: TRUTH[n] for n in shard}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of messages"),
        ({"messages": [1], "send_task_id": "send"}, "exactly one of messages"),
        ({"messages": [1], "poll_interval": 0}, "poll_interval"),
        ({"messages": [1], "poll_interval": 60, "max_poll_interval": 30}, "poll_interval"),
        ({"messages": [1], "timeout": -1}, "timeout"),
        ({"messages": [1], "fail_on_undelivered_ratio": 1.5}, "fail_on_undelivered_ratio"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        A2PSmsDeliveryReportOperator(task_id="delivery", **kwargs)


def test_timeout_takes_seconds_or_a_timedelta():
    from datetime import timedelta

    op = A2PSmsDeliveryReportOperator(task_id="d", messages=[1], timeout=timedelta(hours=2))
    assert op.timeout_s == 7200
    assert A2PSmsDeliveryReportOperator(task_id="d", messages=[1]).timeout_s == 6 * 3600


def test_nothing_accepted_reports_zeros_without_deferring(voximplant_conn, run_dag, monkeypatch):
    voximplant_conn.state.set_faults(blocked_numbers=set(NUMBERS))
    monkeypatch.setattr(A2PSmsDeliveryTrigger, "run", None)  # deferring would fail the task
    tis = run_dag(campaign("voxsms_test_delivery_nothing", deferrable=True))
    assert tis["delivery"].state == "success"
    summary = xcom(tis["delivery"])
    assert summary["messages"] == 0 and summary["pending"] == 0
    assert xcom(tis["delivery"], "failed_numbers").empty
