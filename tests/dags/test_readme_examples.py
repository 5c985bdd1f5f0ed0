"""Every Python example in README.md and docs/ that defines a DAG loads as written; the
README's campaign runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dag_runs import xcom

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def dag_blocks(page: Path) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    return [b for b in blocks if "@dag" in b or "DAG(" in b]


README_BLOCKS = dag_blocks(ROOT / "README.md")
DAG_BLOCKS = [block for page in PAGES for block in dag_blocks(page)]


def load(code: str, tmp_path: Path):
    """The DAGs Airflow's parser finds in a file holding ``code``, and its import errors."""
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "readme_example.py"
    path.write_text(code)
    bag = DagBag(dag_folder=str(path))
    return bag.dags, bag.import_errors


def test_the_pages_have_the_examples_this_file_checks():
    assert len(README_BLOCKS) == 1, "the README's campaign"
    assert len(DAG_BLOCKS) >= 3, "the campaign (README and operator page) and the alert"


@pytest.mark.parametrize("code", DAG_BLOCKS, ids=lambda code: code.split("def ")[1].split("(")[0])
def test_every_dag_example_parses_into_a_dag(code, tmp_path):
    dags, errors = load(code, tmp_path)
    assert not errors, errors
    assert len(dags) == 1, "the example defines and calls its DAG"


def test_the_campaign_example_runs_against_the_emulator(
    voximplant_conn, run_dag, monkeypatch, tmp_path
):
    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{tmp_path / 'ledger.db'}")
    (code,) = README_BLOCKS
    dags, _ = load(code, tmp_path)
    (dag,) = dags.values()
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert xcom(tis["send"])["accepted"] == 2
    sent = {m["destination_number"] for m in voximplant_conn.state.messages_snapshot()}
    assert sent == {"447443332212", "447443332213"}
