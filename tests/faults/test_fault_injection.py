"""Faults injected at the emulator during real DAG runs; afterwards, what the emulator accepted is
compared with the input number by number: nothing sent twice, nothing lost.

Each test asserts the promise it checks in README.md's "Guarantees" section.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

NUMBERS = [f"4474433{i:05d}" for i in range(1000)]


@pytest.fixture
def ledger_db(monkeypatch, tmp_path) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{tmp_path / 'ledger.db'}")
    return "voxsms_db"


def campaign(dag_id: str, ledger: str | None = "voxsms_db", **operator_args) -> DAG:
    operator_args.setdefault("recipients", NUMBERS)
    with DAG(dag_id, schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            text="Fault test",
            src_number="VoxDemo",
            ledger_conn_id=ledger,
            retry_delay=timedelta(0),
            **operator_args,
        )
    return dag


def sent_counts(emulator) -> Counter:
    return Counter(m["destination_number"] for m in emulator.state.messages_snapshot())


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_exact_accounting(summary: dict) -> None:
    settled = ("accepted", "failed", "unknown", "invalid", "duplicates")
    assert sum(summary[k] for k in settled) == summary["recipients"], summary


@pytest.mark.parametrize(
    "storm",
    [
        {"http_429_rate": 0.3, "retry_after_s": 0},
        {"http_503_rate": 0.3},
        {"error_340_rate": 0.3},
        {"error_416_rate": 0.2, "retry_after_s": 1},
    ],
    ids=["http429", "http503", "api340", "api416"],
)
def test_throttling_storm_completes_with_every_number_once(
    run_dag, voximplant_conn, ledger_db, storm, capfd
):
    voximplant_conn.state.set_faults(seed=11, **storm)
    tis = run_dag(campaign(f"voxsms_fault_storm_{next(iter(storm))}", max_concurrency=4))
    assert tis["send"].state == "success"
    sent = sent_counts(voximplant_conn)
    assert set(sent) == set(NUMBERS) and set(sent.values()) == {1}
    assert xcom(tis["send"])["accepted"] == len(NUMBERS)
    assert (
        sum(voximplant_conn.state.stats_snapshot()["http_faults"].values())
        + sum(voximplant_conn.state.stats_snapshot()["api_errors"].values())
        > 0
    ), "the storm happened"
    assert "Voximplant back-off" in capfd.readouterr().out, "back-off is visible in the log"


def test_connection_resets_are_unknown_never_resent_never_lost(run_dag, voximplant_conn, ledger_db):
    voximplant_conn.state.set_faults(reset_connection_rate=0.3, seed=5)
    dag = campaign("voxsms_fault_reset")
    tis = run_dag(dag)
    summary = xcom(tis["send"])
    assert_exact_accounting(summary)
    assert summary["unknown"] > 0 and summary["accepted"] + summary["unknown"] == len(NUMBERS)
    unknown = set(xcom(tis["send"], "unknown_numbers")["destination_number"])
    sent = sent_counts(voximplant_conn)
    assert unknown.isdisjoint(sent), "these requests were cut before processing"

    # Clearing the task (same DAG run) does not re-send them: their fate is unknown.
    voximplant_conn.state.set_faults(reset_connection_rate=0.0)
    tis = run_dag(dag)
    again = xcom(tis["send"])
    assert again["unknown"] == summary["unknown"] and again["batches"] == 0
    assert sent_counts(voximplant_conn) == sent


@pytest.mark.parametrize("fault", ["process_then_500", "slow_response"])
def test_ambiguous_answers_are_reconciled_on_retry_without_duplicates(
    run_dag, voximplant_conn, ledger_db, monkeypatch, fault
):
    if fault == "slow_response":
        conn = json.loads(voximplant_conn.connection_json())
        conn["extra"] = {"timeout": 0.3}
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
        voximplant_conn.state.set_faults(slow_response_s=0.6)
    else:
        voximplant_conn.state.set_faults(process_then_500_rate=0.4, seed=3)
    dag = campaign(f"voxsms_fault_{fault}", recipients=NUMBERS[:500])
    first = xcom(run_dag(dag)["send"])
    assert first["unknown"] > 0
    assert_exact_accounting(first)
    wait_for(lambda: len(sent_counts(voximplant_conn)) == 500)  # slow answers finish late
    assert set(sent_counts(voximplant_conn)) == set(NUMBERS[:500]), "the server processed all"

    # Clear and re-run the same DAG run: the ledger reconciles through A2PGetSmsHistory.
    voximplant_conn.state.set_faults(process_then_500_rate=0.0, slow_response_s=0.0)
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", voximplant_conn.connection_json())
    second = xcom(run_dag(dag)["send"])
    assert second["unknown"] == 0 and second["accepted"] == 500
    assert set(sent_counts(voximplant_conn).values()) == {1}, "no duplicate"


def test_ambiguous_answers_without_ledger_are_unknown_never_lost(run_dag, voximplant_conn):
    voximplant_conn.state.set_faults(process_then_500_rate=0.4, seed=3)
    tis = run_dag(campaign("voxsms_fault_500_no_ledger", ledger=None, recipients=NUMBERS[:500]))
    summary = xcom(tis["send"])
    assert_exact_accounting(summary)
    assert summary["unknown"] > 0 and summary["accepted"] + summary["unknown"] == 500
    assert set(sent_counts(voximplant_conn).values()) == {1}


def test_insufficient_money_fails_fast_then_the_retry_completes_after_top_up(
    run_dag, voximplant_conn, ledger_db
):
    voximplant_conn.state.set_faults(insufficient_money_after=300)

    def top_up(context):
        voximplant_conn.state.set_faults(insufficient_money_after=None)

    dag = campaign("voxsms_fault_money", retries=1, on_retry_callback=top_up, max_concurrency=2)
    tis = run_dag(dag)
    assert tis["send"].state == "success" and tis["send"].try_number == 2
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["api_errors"].get("127", 0) <= 2, "the first try stopped promptly"
    sent = sent_counts(voximplant_conn)
    assert set(sent) == set(NUMBERS) and set(sent.values()) == {1}
    assert xcom(tis["send"])["accepted"] == len(NUMBERS)


def test_insufficient_money_without_ledger_fails_without_retry(run_dag, voximplant_conn):
    voximplant_conn.state.set_faults(insufficient_money_after=300)
    tis = run_dag(campaign("voxsms_fault_money_no_ledger", ledger=None, retries=3))
    assert tis["send"].state == "failed" and tis["send"].try_number == 1
    assert set(sent_counts(voximplant_conn).values()) == {1}


def test_ledger_database_unavailable_fails_before_the_first_sms(
    run_dag, voximplant_conn, monkeypatch, capfd
):
    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", "postgresql://nobody@127.0.0.1:9/none")
    tis = run_dag(campaign("voxsms_fault_ledger_down"))
    assert tis["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["per_method"].get("A2PSendSms", 0) == 0
    assert "The send ledger on connection 'voxsms_db' is unavailable" in capfd.readouterr().out


@pytest.mark.slow
def test_worker_killed_mid_run_then_run_again(voximplant_conn, ledger_db, airflow_db):
    """SIGKILL the process running the task mid-campaign, then run the task again."""
    count = 4000
    voximplant_conn.state.set_faults(latency_ms=100)
    target = [sys.executable, str(Path(__file__).with_name("kill_target.py")), str(count)]
    child = subprocess.Popen(target, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: len(sent_counts(voximplant_conn)) >= 1000, seconds=120)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    killed_at = len(sent_counts(voximplant_conn))
    assert 1000 <= killed_at < count, "the child died mid-run"

    voximplant_conn.state.set_faults(latency_ms=0)
    again = subprocess.run(target, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])

    sent = sent_counts(voximplant_conn)
    assert set(sent.values()) == {1}, "zero duplicates"
    assert_exact_accounting(summary)
    assert summary["accepted"] + summary["unknown"] == count, "zero lost"
    assert summary["accepted"] == len(sent)
    # Only requests claimed but not yet processed when the child died can be unknown.
    assert summary["unknown"] <= 2 * 100


def test_a_ledger_write_failure_still_pushes_the_outputs_then_fails(
    run_dag, voximplant_conn, ledger_db, monkeypatch
):
    from airflow_provider_voxsms.ledger import LedgerError, SendLedger

    real_close = SendLedger.close

    def close_reporting_a_lost_write(self):
        real_close(self)
        raise LedgerError("1 send ledger write(s) failed, first: OperationalError: locked")

    monkeypatch.setattr(SendLedger, "close", close_reporting_a_lost_write)
    tis = run_dag(campaign("voxsms_fault_ledger_write", recipients=NUMBERS[:300]))
    assert tis["send"].state == "failed"
    assert len(xcom(tis["send"], "accepted_numbers")) == 300, "outputs were pushed first"


@dataclass
class RunningTry:
    """One try of task instance dag/run/send, as a worker runs it: ``execute()`` in a thread.

    Two tries of one task instance running at once (a worker Airflow gave up on, still
    sending, and its retry) cannot be staged with ``dag.test()``, which runs one try at a time;
    everything else here is real: HTTP to the emulator and the ledger database.
    """

    xcoms: dict = field(default_factory=dict)
    dag_id: str = "voxsms_fault_two_tries"
    run_id: str = "manual__2026-01-01"
    task_id: str = "send"
    map_index: int = -1

    def xcom_push(self, key: str, value) -> None:
        self.xcoms[key] = value

    def start(self, operator: A2PSendSmsOperator) -> threading.Thread:
        def run() -> None:
            self.xcoms["return_value"] = operator.execute({"ti": self})

        thread = threading.Thread(target=run)
        thread.start()
        return thread


def test_an_older_try_still_running_never_sends_what_the_newer_try_sends(
    voximplant_conn, voxsms_db
):
    """A newer try starts while the older one is still sending: the newer takes the ledger
    over, the older stops claiming, and every number is sent at most once and accounted for."""
    numbers = NUMBERS[:600] + [f"4474455{i:05d}" for i in range(2400)]
    voximplant_conn.state.set_faults(latency_ms=50)

    def operator() -> A2PSendSmsOperator:
        return A2PSendSmsOperator(
            task_id="send",
            recipients=numbers,
            text="Two tries",
            src_number="VoxDemo",
            ledger_conn_id=voxsms_db,
            max_concurrency=2,
        )

    older, newer = RunningTry(), RunningTry()
    older_thread = older.start(operator())
    wait_for(lambda: len(sent_counts(voximplant_conn)) >= 500, seconds=60)
    newer.start(operator()).join(timeout=120)
    older_thread.join(timeout=120)

    sent = sent_counts(voximplant_conn)
    assert set(sent.values()) == {1}, "zero duplicates"
    first, second = older.xcoms["return_value"], newer.xcoms["return_value"]
    assert_exact_accounting(first), assert_exact_accounting(second)
    assert 500 <= first["accepted"] < len(numbers), "the older try was stopped mid-run"
    accepted = set(newer.xcoms["accepted_numbers"]["destination_number"])
    unknown = set(newer.xcoms["unknown_numbers"]["destination_number"])
    assert accepted | unknown == set(numbers), "zero lost"
    assert accepted <= set(sent) <= accepted | unknown
    # Only batches the older try had claimed and not yet answered can be unknown.
    assert second["unknown"] <= 2 * 100
