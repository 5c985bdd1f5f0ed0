"""Issue 20's must-hold for frequency caps, through real processes: two campaigns sending
different texts to lists of 6,000 that share 3,000 numbers, both capped at one message a day
on one ledger (PostgreSQL, SQLite), started at the same moment in two processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CAMPAIGN = Path(__file__).with_name("capped_campaign.py")
SHARED, ONLY_A, ONLY_B = range(3_000, 6_000), range(0, 3_000), range(6_000, 9_000)


def number(i: int) -> str:
    return f"4474433{i:05d}"


def start(dag_id: str, run_id: str, ranges: str, text: str, go: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CAMPAIGN), dag_id, run_id, ranges, text, str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def summary_of(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_capped_campaigns_at_once_give_each_number_one_message(
    voximplant_conn, voxsms_db, tmp_path
):
    voximplant_conn.state.set_faults(latency_ms=20)  # requests overlap across the processes
    go = tmp_path / "go"
    # Both lists begin with the shared numbers, so both claim them at the same moment.
    a = start("voxsms_cap_a", "run-1", "3000-6000,0-3000", "Offer A", go)
    b = start("voxsms_cap_b", "run-1", "3000-6000,6000-9000", "Offer B", go)
    ready = [Path(f"{go}.{dag_id}.run-1.ready") for dag_id in ("voxsms_cap_a", "voxsms_cap_b")]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in ready) and time.monotonic() < deadline:
        assert a.poll() is None and b.poll() is None, "a campaign process ended early"
        time.sleep(0.05)
    go.touch()
    first, second = summary_of(a), summary_of(b)

    messages = voximplant_conn.state.messages_snapshot()
    sent = Counter(m["destination_number"] for m in messages)
    everyone = {number(i) for r in (ONLY_A, SHARED, ONLY_B) for i in r}
    assert max(sent.values()) == 1, "no number gets two messages"
    assert set(sent) == everyone, "every number of either list gets one"
    for summary in (first, second):
        assert summary["accepted"] + summary["capped"] == 6_000, summary
    assert first["capped"] + second["capped"] == 3_000
    by_text = {
        text: [m["time"] for m in messages if m["text"] == text] for text in ("Offer A", "Offer B")
    }
    assert max(map(min, by_text.values())) < min(map(max, by_text.values())), (
        "the two campaigns were sending at the same time"
    )
    assert {m["text"] for m in messages if m["destination_number"] == number(0)} == {"Offer A"}

    again = start("voxsms_cap_a", "run-2", "3000-6000,0-3000", "Offer A", go)
    later = summary_of(again)
    assert (later["accepted"], later["capped"]) == (0, 6_000), later
    assert len(voximplant_conn.state.messages_snapshot()) == len(messages), "nothing more sent"
