"""After full DAG runs with a real key, nothing Airflow kept contains the key or a token.

Scanned: everything the runs printed (task logs go to the console under dag.test), files under
AIRFLOW_HOME/logs, the whole metadata database file (XComs, rendered template fields, task
instance notes and errors), the ledger and failed-number database file, and the messages of
the exceptions that failed a task.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from airflow.sdk import DAG, task
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.storage import log_failed_numbers


def secret_fragments(emulator) -> set[str]:
    """The PEM, every 24-character piece of its body, and every token the emulator saw."""
    credentials = json.loads(emulator.credentials_json)
    pem = credentials["private_key"]
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    pieces = {body[i : i + 24] for i in range(0, len(body) - 24, 12)}
    tokens = set(emulator.state.stats.tokens)
    assert tokens, "the runs used tokens"
    return {pem, *pieces, *tokens, *(t.split(".")[2] for t in tokens)}


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_no_key_or_token_anywhere_after_real_runs(
    run_dag, voximplant_conn, tmp_path, capfd, monkeypatch
):
    db_file = tmp_path / "voxsms.db"
    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{db_file}")
    voximplant_conn.state.set_faults(
        blocked_numbers={"447443332299"}, error_416_rate=0.3, seed=1, retry_after_s=0
    )

    with DAG("voxsms_secrets_ok", schedule=None) as ok_dag:
        send = A2PSendSmsOperator(
            task_id="send",
            recipients=["+447443332212", "+447443332299", "nonsense"],
            text="Secret scan {{ ds }}",
            src_number="VoxDemo",
            ledger_conn_id="voxsms_db",
        )

        def log_failed(ti=None):
            failed = ti.xcom_pull(task_ids="send", key="failed_numbers")
            log_failed_numbers(
                failed, conn_id="voxsms_db", dag_id=ti.dag_id, run_id=ti.run_id, task_id="send"
            )

        send >> task(log_failed)()

    with DAG("voxsms_secrets_failing", schedule=None) as failing_dag:
        A2PSendSmsOperator(  # an unknown sender: the API refuses, the task fails with a message
            task_id="send", recipients=["+447443332213"], text="x", src_number="NotOurs"
        )

    ok = run_dag(ok_dag)
    assert ok["send"].state == "success" and xcom(ok["send"])["accepted"] == 1
    failing = run_dag(failing_dag)
    assert failing["send"].state == "failed"

    printed = capfd.readouterr()
    assert "Sending stopped" in printed.out + printed.err, "the failure's message was captured"
    haystacks = {"console": printed.out + printed.err}
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    for path in [*files_under(airflow_home / "logs"), airflow_home / "airflow.db", db_file]:
        haystacks[str(path)] = path.read_bytes().decode("utf-8", "replace")

    fragments = secret_fragments(voximplant_conn)
    leaks = {
        where: sorted(f[:10] + "..." for f in fragments if f in text)
        for where, text in haystacks.items()
    }
    assert {where: found for where, found in leaks.items() if found} == {}
    assert re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", haystacks["console"]) is None, "no JWT at all"


@pytest.mark.parametrize("field", ["recipients", "text", "src_number"])
def test_template_fields_hold_no_connection_data(field):
    assert field in A2PSendSmsOperator.template_fields
    assert not {"password", "credentials", "token"} & set(A2PSendSmsOperator.template_fields)
