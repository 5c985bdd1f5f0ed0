"""`python -m bench --smoke`: the benchmark harness runs end to end at tiny sizes, so it cannot rot.

Benchmarks are not tests: nothing here looks at a timing, only at the harness finishing and
writing a table with every section.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_every_section(tmp_path):
    out = tmp_path / "results.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VOXSMS_BENCH"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert "| # | measurement | median |" in text
    for section in "1234589":
        assert f"\n| {section} |" in text, f"section {section} missing:\n{text}"
    assert "\n| 6 | log_failed_numbers" in text  # SQLite always; PostgreSQL measured or skipped
    assert "Machine:" in text and "Airflow" in text
