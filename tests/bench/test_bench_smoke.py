"""`python -m bench --smoke`: the benchmark harness runs end to end at tiny sizes, so it cannot rot.

Benchmarks are not tests: nothing here looks at a timing, only at the harness finishing and
writing a table with every section, and at section 11 (stream from SQL) checking what it sent.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[str, str]:
    """One `python -m bench --smoke` run: (results.md, stderr)."""
    out = tmp_path_factory.mktemp("bench") / "results.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VOXSMS_BENCH"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out.read_text(), done.stderr


@pytest.mark.timeout(450)
def test_bench_smoke_runs_every_section(smoke):
    text, _ = smoke
    assert "| # | measurement | median |" in text
    for section in ("1", "2", "3", "4", "5", "8", "9", "11", "12"):
        assert f"\n| {section} |" in text, f"section {section} missing:\n{text}"
    assert "\n| 6 | log_failed_numbers" in text  # SQLite always; PostgreSQL measured or skipped
    assert "Machine:" in text and "Airflow" in text


def test_bench_smoke_streams_2000_rows_from_sql_with_one_result_row_each(smoke):
    text, stderr = smoke
    if "| 11 | stream from SQL | skipped |" in text:
        pytest.skip("no PostgreSQL binaries: section 11 was skipped")
    for n in ("1,000", "2,000"):
        row = next(line for line in text.splitlines() if line.startswith(f"| 11 | N = {n} from"))
        cells = [cell.strip() for cell in row.split("|")]
        assert cells[6] == "yes", f"results rows or accepted count wrong at {n}: {row}"
        assert re.search(rf"results rows {n}, accepted [\d,]+ \([\d,]+ copies\)", row), row
        assert f"| 11 | N = {n}: peak RSS of the task process | " in text
    detail = text[text.index("### 11. Stream from SQL: per size") :]
    assert re.search(r"\n\| 2,000 \| [\d.]+ \| [\d.]+ \| [\d,]+ \| [\d,]+ \| 2,000 \| ", detail)
    for target in ("peak RSS at 2,000 / at 1,000", "peak RSS at 2,000", "time per recipient"):
        assert f"| 11 | {target}" in text, f"target row {target!r} missing"
    assert re.search(r"target .*: (PASS|FAIL)", stderr), "PASS/FAIL lines in the section's output"
    retry = next(line for line in text.splitlines() if "| 11 | retry of 2,000" in line)
    assert "emulator duplicates 0" in retry and "| yes |" in retry, retry


def test_bench_smoke_settles_a_streamed_campaign_once(smoke):
    text, _ = smoke
    row = next(line for line in text.splitlines() if line.startswith("| 12 | 600 recipients"))
    assert "every number once" in row, row


@pytest.mark.parametrize(
    ("argv", "written"),
    [
        ([], REPO / "bench" / "results.md"),
        (["--only", "11"], None),  # partial: it would replace every other section's rows
        (["--smoke"], None),
        (["--only", "11", "--out", "x.md"], Path("x.md")),
    ],
)
def test_only_a_full_run_replaces_the_results_file(argv, written, monkeypatch):
    # `bench` would name tests/bench here (tests/ is on sys.path): the repository's, by path.
    monkeypatch.syspath_prepend(str(REPO))
    for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
        monkeypatch.delitem(sys.modules, name)
    main = importlib.import_module("bench.__main__")

    assert main.results_path(main.parse_args(argv)) == written
