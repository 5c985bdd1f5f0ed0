"""`make demo` (scripts/demo.py) end to end in a temporary .demo/: its report in plain words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_voxsms.emulator.store import MessageLog

REPO = Path(__file__).resolve().parents[2]


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
        f"voxsms-emulator --state-dir {tmp_path / 'emulator'}",
        "and open http://127.0.0.1:8025/_emulator/messages",
    ]:
        assert line in out, f"{line!r} not in:\n{out}"
    # The hint holds: the stopped emulator's messages are in its state dir.
    assert len(list(MessageLog(tmp_path / "emulator" / "messages.jsonl").load())) == 14
    assert (tmp_path / "dags-test.log").exists()
