"""`make demo` (scripts/demo.py) end to end in a temporary .demo/: its report in plain words."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_voxsms.emulator.store import MessageLog

REPO = Path(__file__).resolve().parents[2]
#: What voxsms_personalised_campaign may text of the customers the demo seeds: the six that are
#: valid and not opted out, each its own text. Which of them are inside their send window
#: depends on the time of day the test runs; the rest are deferred.
PERSONAL_TEXTS = {
    "447443332230": "Hi Ann, your code is 4821.",
    "447443332231": "Hi Bo, your code is 0042.",
    "4915123456780": "Hi Dora, your code is 7710.",
    "12125550142": "Hi Gus, your code is 3333.",
    "819012345670": "Hi Hana, your code is 4444.",
    "61412345670": "Hi Liam, your code is 2718.",
}


@pytest.mark.slow
def test_demo_says_what_happened_and_where_to_look(tmp_path):
    env = {**os.environ, "VOXSMS_DEMO_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, REPO / "scripts" / "demo.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    for line in [
        "tasks: extract success, send success, delivery success",
        "rows read:     20 (from dags/data/recipients.csv)",
        "invalid:       3, never sent, e.g.:",
        "'not-a-number' - contains letters",
        "'' (blank) - empty",
        "duplicates:    1, sent once",
        "sent:          16 numbers to the API in 3 request(s) of at most 100",
        "accepted:      14 (14 SMS fragments); the emulator holds 14 message(s)",
        "failed:        2, refused by the API, e.g.:",
        "'447443332298', '447443332299' - 509 A2P SMS disabled",
        "delivered:     13, failed on delivery: 1 (of 14 followed), e.g.:",
        "'447443332217' - FAILED: Absent subscriber",
        "logged:        6 row(s) in table sms_failed_numbers (connection voxsms_db)",
        "14 row(s) in table sms_delivery_status",
        f"the ledger:    connection voxsms_db (SQLite file {tmp_path / 'airflow' / 'voxsms.db'})",
        "tables voxsms_send_ledger_claims, voxsms_send_ledger_leases, voxsms_send_ledger_outcomes",
        f"the run log:         {tmp_path / 'dags-test.log'}",
        f"sqlite3 {tmp_path / 'airflow' / 'voxsms.db'} 'select * from sms_failed_numbers'",
        f"sqlite3 {tmp_path / 'airflow' / 'voxsms.db'} 'select * from sms_delivery_status'",
        f"{tmp_path / 'emulator' / 'messages.jsonl'} (one line per request)",
        f"--state-dir {tmp_path / 'emulator'} --blocked-numbers 447443332299,447443332298 "
        "--delivery-by-last-digit 7=FAILED",
        "the Airflow UI:      first start the emulator again (command above; the connection",
        # voxsms_personalised_campaign, on the tables the demo seeds
        "seeded 9 customers and 2 opt-outs (tables voxsms_customers, voxsms_opt_outs",
        "running: airflow dags test voxsms_personalised_campaign",
        "What happened (DAG voxsms_personalised_campaign, run ",
        "rows read:     9 (from table voxsms_customers)",
        "invalid:       1, never sent, e.g.:",
        "'+44 7443 332232' - placeholder {first_name} is empty",
        "suppressed:    2, opted out (table voxsms_opt_outs",
        f"its log:           {tmp_path / 'dags-test-personalised.log'}",
        f"sqlite3 {tmp_path / 'airflow' / 'voxsms.db'} 'select * from sms_deferred_numbers'",
    ]:
        assert line in out, f"{line!r} not in:\n{out}"
    # The emulator is started again on the port the demo's connection names.
    port = re.search(r"voxsms-emulator --port (\d+) --state-dir", out)[1]
    assert f"and open http://127.0.0.1:{port}/_emulator/messages" in out, out
    conn = (tmp_path / "connections.env").read_text()
    assert f"http://127.0.0.1:{port}/platform_api" in conn, conn
    personal_run = out[out.index("DAG voxsms_personalised_campaign, run ") :]
    tasks = dict(task.split(" ") for task in re.search(r"tasks: (.*)", personal_run)[1].split(", "))
    assert tasks == dict.fromkeys(
        ["extract", "send", "delivery", "log_numbers", "report"], "success"
    ), personal_run
    # Whatever the time of day: the six sendable customers are either sent or deferred.
    outside = int(re.search(r"outside window: (\d+),", personal_run)[1])
    sent, accepted = map(
        int, re.search(r"sent: +(\d+) numbers .*; accepted (\d+),", personal_run).groups()
    )
    assert outside + sent == len(PERSONAL_TEXTS) and accepted == sent, out
    assert f"1 row(s) in table sms_failed_numbers, {outside} row(s) in table " in out
    # The hint holds: the stopped emulator's messages are in its state dir.
    stored = list(MessageLog(tmp_path / "emulator" / "messages.jsonl").load())
    assert len(stored) == 14 + accepted
    personal = {m["destination_number"]: m["text"] for m in stored if m["text"].startswith("Hi ")}
    assert len(personal) == accepted
    assert personal.items() <= PERSONAL_TEXTS.items(), "each customer got their own text"
    assert (tmp_path / "dags-test.log").exists()
    assert (tmp_path / "dags-test-personalised.log").exists()
