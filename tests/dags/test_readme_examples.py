"""Every Python example in README.md that defines a DAG loads as written; the campaign runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dag_runs import xcom

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
DAG_BLOCKS = [b for b in BLOCKS if "@dag" in b or "DAG(" in b]


def load(code: str, tmp_path: Path):
    """The DAGs Airflow's parser finds in a file holding ``code``, and its import errors."""
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "readme_example.py"
    path.write_text(code)
    bag = DagBag(dag_folder=str(path))
    return bag.dags, bag.import_errors


def test_the_readme_has_the_examples_this_file_checks():
    assert len(DAG_BLOCKS) >= 2, "the campaign and the alert"


@pytest.mark.parametrize("code", DAG_BLOCKS, ids=lambda code: code.split("def ")[1].split("(")[0])
def test_every_dag_example_parses_into_a_dag(code, tmp_path):
    dags, errors = load(code, tmp_path)
    assert not errors, errors
    assert len(dags) == 1, "the example defines and calls its DAG"


def test_the_campaign_example_runs_against_the_emulator(
    voximplant_conn, run_dag, monkeypatch, tmp_path
):
    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{tmp_path / 'ledger.db'}")
    (code,) = [b for b in DAG_BLOCKS if "A2PSendSmsOperator(" in b]
    dags, _ = load(code, tmp_path)
    (dag,) = dags.values()
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert xcom(tis["send"])["accepted"] == 2
    sent = {m["destination_number"] for m in voximplant_conn.state.messages_snapshot()}
    assert sent == {"447443332212", "447443332213"}
