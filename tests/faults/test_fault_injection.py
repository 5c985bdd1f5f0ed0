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

from airflow_provider_voxsms.errors import CampaignStoppedError, LedgerError
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
            **{"settle_delay_s": 0.5, **operator_args},
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


AMBIGUOUS_FAULTS = {
    # the connection is cut after the request was read; nothing was processed
    "reset": {"reset_connection_rate": 1 / 13, "seed": 5},
    # processed, then HTTP 500
    "processed_then_500": {"process_then_500_rate": 0.4, "seed": 3},
    # the answer comes after the client's read timeout; the server processes it anyway
    "read_timeout": {"slow_response_s": 0.6},
    # HTTP 503 past the hook's attempts: not processed, sent again after the settle delay
    "503_past_attempts": {"http_503_burst": 12},
}
FAST_HOOK = {"max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}


@pytest.mark.parametrize("ledger", [None, "voxsms_db"], ids=["no-ledger", "ledger"])
@pytest.mark.parametrize("fault", list(AMBIGUOUS_FAULTS))
def test_ambiguous_answers_are_settled_in_the_run_exactly_once(
    run_dag, voximplant_conn, ledger_db, monkeypatch, fault, ledger
):
    """Every number accepted exactly once and none unknown, with or without a ledger."""
    if fault == "read_timeout":
        conn = json.loads(voximplant_conn.connection_json())
        conn["extra"] = {"timeout": 0.3}
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    voximplant_conn.state.set_faults(**AMBIGUOUS_FAULTS[fault])
    dag = campaign(
        f"voxsms_fault_settle_{fault}_{ledger}",
        ledger=ledger,
        recipients=NUMBERS[:500],
        batch_size=10,
        max_concurrency=4,
        hook_params=FAST_HOOK,
    )
    tis = run_dag(dag)
    summary = xcom(tis["send"])
    assert tis["send"].state == "success", summary
    assert_exact_accounting(summary)
    assert summary["unknown"] == 0 and summary["accepted"] == 500, summary
    sent = sent_counts(voximplant_conn)
    assert set(sent) == set(NUMBERS[:500]) and set(sent.values()) == {1}, "exactly once"
    if fault in ("processed_then_500", "read_timeout"):
        assert summary["reconciled"] > 0 and summary["resent"] == 0, summary
    else:
        assert summary["resent"] > 0 and summary["reconciled"] == 0, summary


@pytest.mark.parametrize("lag_s", [0.2, 3.0], ids=["lag-below-delay", "lag-above-delay"])
def test_history_lagging_past_the_settle_delay_is_the_one_way_to_send_twice(
    run_dag, voximplant_conn, ledger_db, lag_s
):
    """Processed-then-500 while the history shows messages only ``lag_s`` after processing,
    with a settle delay of 1 s: below it nothing is sent twice; above it the numbers of the
    ambiguous requests look as if they never arrived and are sent again (README, Guarantees)."""
    voximplant_conn.state.set_faults(process_then_500_rate=0.3, seed=3, history_lag_s=lag_s)
    dag = campaign(
        f"voxsms_fault_history_lag_{lag_s}", recipients=NUMBERS[:300], settle_delay_s=1.0
    )
    summary = xcom(run_dag(dag)["send"])
    sent = sent_counts(voximplant_conn)
    assert set(sent) == set(NUMBERS[:300]) and summary["unknown"] == 0
    twice = {number for number, count in sent.items() if count > 1}
    if lag_s < 1.0:
        assert not twice and summary["reconciled"] > 0
    else:
        assert twice and len(twice) == summary["resent"], "exactly the re-sent ones"
        assert summary["reconciled"] == 0


def test_numbers_left_unknown_fail_the_task_without_retry_when_there_is_no_ledger(
    run_dag, voximplant_conn
):
    """Every request cut (nothing processed), one settle round: the numbers stay unknown."""
    voximplant_conn.state.set_faults(reset_connection_rate=1.0)
    dag = campaign(
        "voxsms_fault_unknown_no_ledger",
        ledger=None,
        recipients=NUMBERS[:300],
        settle_rounds=1,
        retries=2,
    )
    tis = run_dag(dag)
    assert tis["send"].state == "failed" and tis["send"].try_number == 1, "not retried"
    assert len(xcom(tis["send"], "unknown_numbers")) == 300
    assert sent_counts(voximplant_conn) == Counter()


def test_numbers_left_unknown_with_a_ledger_fail_retryably_and_the_retry_settles_them(
    run_dag, voximplant_conn, ledger_db
):
    def heal(context):
        voximplant_conn.state.set_faults(reset_connection_rate=0.0)

    voximplant_conn.state.set_faults(reset_connection_rate=1.0)
    dag = campaign(
        "voxsms_fault_unknown_ledger",
        recipients=NUMBERS[:300],
        settle_rounds=1,
        retries=1,
        on_retry_callback=heal,
    )
    tis = run_dag(dag)
    assert tis["send"].state == "success" and tis["send"].try_number == 2
    summary = xcom(tis["send"])
    assert summary["unknown"] == 0 and summary["accepted"] == 300
    assert summary["resent"] == 300, "the retry found none in the history and sent them"
    sent = sent_counts(voximplant_conn)
    assert set(sent) == set(NUMBERS[:300]) and set(sent.values()) == {1}


def _other_key(voximplant_conn) -> str:
    from airflow_provider_voxsms.emulator.credentials import Credentials

    conn = json.loads(voximplant_conn.connection_json())
    conn["password"] = Credentials.generate(account_id=77).to_json()
    return json.dumps(conn)


def _nothing_listening(voximplant_conn) -> str:
    conn = json.loads(voximplant_conn.connection_json())
    conn["host"] = "http://127.0.0.1:9/platform_api"
    return json.dumps(conn)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("other_key", "the key id is not known to Voximplant"),
        ("nothing_listening", "could not connect"),
        ("slow_clock", "this machine's clock is behind"),
    ],
)
def test_a_run_that_reaches_nobody_fails_loudly_with_one_clear_message(
    run_dag, voximplant_conn, monkeypatch, capfd, setup, words
):
    if setup == "other_key":
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", _other_key(voximplant_conn))
    elif setup == "nothing_listening":
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", _nothing_listening(voximplant_conn))
    else:  # our clock two hours slow: every token has expired
        from airflow_provider_voxsms.auth import TokenSigner

        slow_clock = lambda: time.time() - 7200  # noqa: E731
        monkeypatch.setitem(TokenSigner.__init__.__kwdefaults__, "clock", slow_clock)
    dag = campaign(
        f"voxsms_fault_nobody_{setup}", ledger=None, max_concurrency=4, hook_params=FAST_HOOK
    )
    tis = run_dag(dag)
    assert tis["send"].state == "failed"
    out = capfd.readouterr().out
    assert words in out, out[-3000:]
    summary_line = [line for line in out.splitlines() if "Sending stopped:" in line]
    assert summary_line, "one message names the cause and what to do"
    assert voximplant_conn.state.stats_snapshot()["accepted"] == 0
    assert voximplant_conn.state.stats_snapshot()["per_method"].get("A2PSendSms", 0) <= 4 * 2


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
    assert summary["accepted"] == count == len(sent), "zero lost, zero unknown"
    # What the ledger had recorded was not sent again; the requests in flight when the child
    # died (up to 16 x 100 numbers, some already processed) were settled through the history.
    assert summary["earlier"] > 0 and summary["reconciled"] + summary["resent"] > 0
    assert summary["earlier"] + summary["reconciled"] >= 1000, "the first 1,000 not re-sent"


def test_a_ledger_write_failure_still_pushes_the_outputs_then_fails(
    run_dag, voximplant_conn, ledger_db, monkeypatch
):
    from airflow_provider_voxsms.storage.ledger import SendLedger

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
            try:
                self.xcoms["return_value"] = operator.execute({"ti": self})
            except Exception as error:  # the outputs were pushed before it was raised
                self.xcoms["error"] = error

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
            settle_delay_s=0.5,
        )

    older, newer = RunningTry(), RunningTry()
    older_thread = older.start(operator())
    wait_for(lambda: len(sent_counts(voximplant_conn)) >= 500, seconds=60)
    newer.start(operator()).join(timeout=120)
    older_thread.join(timeout=120)

    sent = sent_counts(voximplant_conn)
    assert set(sent.values()) == {1}, "zero duplicates"
    assert "held by another try" in str(older.xcoms["error"]) or isinstance(
        older.xcoms["error"], CampaignStoppedError
    ), "the older try fails: it left numbers to the newer one"
    older_accepted = len(older.xcoms["accepted_numbers"])
    assert 500 <= older_accepted < len(numbers), "the older try was stopped mid-run"
    second = newer.xcoms["return_value"]
    assert_exact_accounting(second)
    assert second["unknown"] == 0 and second["accepted"] == len(numbers), "zero lost"
    assert set(newer.xcoms["accepted_numbers"]["destination_number"]) == set(sent)
