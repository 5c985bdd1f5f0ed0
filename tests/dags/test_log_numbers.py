"""No recipient's number in the logs (issue 21): a real campaign with invalid, refused, duplicate
and ambiguous numbers and a delivery report logs none of them, in any spelling, unless
``log_numbers="full"``; the outputs still hold every number."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import pytest
from airflow.sdk import DAG, XComArg
from dag_runs import xcom
from test_campaign_rules import clock_at

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator

# (as written, E.164 digits or None when invalid, national number)
ROWS = [
    ("+44 7700 900101", "447700900101", "7700900101"),
    ("07700 900102", "447700900102", "7700900102"),  # national, default_region GB
    ("447700900103", "447700900103", "7700900103"),  # delivery FAILED (last digit 3)
    ("+44 (0)7700-900104", "447700900104", "7700900104"),  # refused by the API: 509
    ("0044 7700 900101", "447700900101", "7700900101"),  # a copy of the first row
    ("+1 617885757", None, "617885757"),  # invalid: too short for +1
    ("07700 9001", None, "77009001"),  # invalid: too short for +44
    ("+44 7700 900105", "447700900105", "7700900105"),
    ("+44 7700 900106", "447700900106", "7700900106"),
    ("+44 7700 900107", "447700900107", "7700900107"),
    ("+44 7700 900108", "447700900108", "7700900108"),
]
BLOCKED = {"447700900104"}
_SEPARATORS = re.compile(r"[\s\-./()+]")


def spellings(rows=ROWS) -> set[str]:
    """What a leak looks like: each recipient's digits and national number."""
    out = set()
    for written, e164, national in rows:
        out |= {_SEPARATORS.sub("", written), national}
        if e164:
            out.add(e164)
    return out


def leaks(lines: list[str], rows=ROWS) -> list[str]:
    """The lines that hold a recipient's digits (separators removed) or national number."""
    numbers = spellings(rows)
    return [line for line in lines if any(n in _SEPARATORS.sub("", line) for n in numbers)]


@pytest.fixture
def logged(caplog, capfd):
    """Every line logged while the test runs: stdlib records (any logger, DEBUG up), whatever
    structlog and the task runner print, and the task log files written meanwhile."""
    from airflow.configuration import conf

    folder = conf.get("logging", "base_log_folder")
    started = datetime.now(UTC).timestamp()
    caplog.set_level(logging.DEBUG)

    def lines(provider_only: bool = True) -> list[str]:
        from pathlib import Path

        out = [r.getMessage() for r in caplog.records]
        out += [
            line
            for r in caplog.records
            if r.exc_info
            for line in logging.Formatter().formatException(r.exc_info).splitlines()
        ]
        captured = capfd.readouterr()
        out += captured.out.splitlines() + captured.err.splitlines()
        for path in Path(folder).rglob("*"):
            if path.is_file() and path.stat().st_mtime >= started:
                out += path.read_text(errors="replace").splitlines()
        return out

    return lines


def campaign(dag_id: str, db: str, **options) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send",
            recipients=[{"phone": written} for written, _, _ in ROWS],
            text="Your code is ready",
            src_number="VoxDemo",
            default_region="GB",
            batch_size=2,
            settle_delay_s=0,
            ledger_conn_id=db,
            **options,
        )
        report = A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=XComArg(send, key="accepted_numbers"),
            src_number="VoxDemo",
            timeout=5,
            poll_interval=0.2,
            max_poll_interval=0.4,
            deferrable=True,  # the trigger's rounds log too (dag.test() runs it inline)
            **options,
        )
        send >> report
    return dag


def faults(server) -> None:
    """Refuse one number; answer HTTP 500 after processing about half the sends (ambiguous:
    settled from the history); fail the delivery of numbers ending in 3."""
    server.state.set_faults(
        blocked_numbers=BLOCKED,
        process_then_500_rate=0.5,
        seed=7,
        delivery_queued_s=0.2,
        delivery_by_last_digit="3=FAILED",
    )


def test_a_campaign_logs_no_recipients_number_by_default(
    voximplant_conn, voxsms_db, run_dag, logged
):
    faults(voximplant_conn)
    tis = run_dag(campaign("voxsms_test_log_numbers_masked", voxsms_db))
    assert tis["send"].state == "success" and tis["delivery"].state == "success"
    summary = xcom(tis["send"])
    assert (summary["invalid"], summary["duplicates"], summary["failed"]) == (2, 1, 1)
    assert summary["accepted"] == 7 and summary["reconciled"] > 0, "some answers were ambiguous"
    assert xcom(tis["delivery"])["failed"] == 1
    lines = logged()
    assert any("invalid row(s)" in line for line in lines), "the warning is there, masked"
    assert any("'+1 ******* 57'" in line for line in lines)
    assert leaks(lines) == []
    accepted = xcom(tis["send"], "accepted_numbers")["destination_number"].str.lstrip("+")
    assert set(accepted) == {e164 for _, e164, _ in ROWS if e164} - BLOCKED, "XComs keep them"
    failed = xcom(tis["send"], "failed_numbers")
    assert "+1 617885757" in set(failed["input_number"]), "as written, in full"


def test_log_numbers_full_restores_the_numbers_in_the_log(
    voximplant_conn, voxsms_db, run_dag, logged
):
    """The check above would see a leak: with ``"full"`` the warning names the numbers."""
    faults(voximplant_conn)
    tis = run_dag(campaign("voxsms_test_log_numbers_full", voxsms_db, log_numbers="full"))
    assert tis["send"].state == "success"
    lines = logged()
    assert any("'+1 617885757'" in line for line in lines)
    assert leaks(lines) != []


def test_the_never_in_window_error_in_the_task_log_is_masked(
    voximplant_conn, voxsms_db, run_dag, logged, monkeypatch
):
    """An exception that reaches the task log is a log line too."""
    toll_free = ("+1 800 555 0199", "18005550199", "8005550199")  # every NANP zone
    clock_at(monkeypatch, datetime(2026, 12, 1, 14, 0, tzinfo=UTC))
    with DAG("voxsms_test_log_numbers_window", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=[toll_free[0]],
            text="Hello",
            src_number="VoxDemo",
            send_window=("09:00", "12:00"),
            outside_window="wait",
            ledger_conn_id=voxsms_db,
        )
    tis = run_dag(dag)
    assert tis["send"].state == "failed"
    lines = logged()
    assert any("never inside send_window" in line for line in lines)
    assert any("+1 ******** 99" in line for line in lines)
    assert leaks(lines, [toll_free]) == []
    assert voximplant_conn.state.messages_snapshot() == []


@pytest.mark.parametrize("operator", ["send", "delivery"])
def test_an_unknown_log_numbers_mode_is_refused_when_the_dag_is_parsed(operator):
    refused = pytest.raises(ValueError, match=r"log_numbers is ('masked' or 'full'|one of)")
    with DAG("voxsms_test_log_numbers_parse", schedule=None), refused:
        if operator == "send":
            A2PSendSmsOperator(
                task_id="send", recipients=[], text="hi", src_number="S", log_numbers="some"
            )
        else:
            A2PSmsDeliveryReportOperator(task_id="d", messages=[], log_numbers="some")
