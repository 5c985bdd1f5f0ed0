"""Null markers (issue 21): a CSV with every marker in a placeholder column, read by the operator
itself (``recipients_path``) in a real DAG run against the emulator: those rows are invalid,
none is sent."""

from __future__ import annotations

import pandas as pd
from airflow.sdk import DAG
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.storage.results import read_outcomes

MARKERS = ["", "NULL", "null", "None", "NA", "N/A", "NaN", "\\N", " nan ", "n/a", "<NA>"]
MARKED = [f"447700900{i:03d}" for i in range(len(MARKERS))]
NAMED = {"447700900100": "Ann", "447700900101": "Nat"}  # "Nat" is a name, not NaT


def test_every_null_marker_in_a_placeholder_column_makes_an_invalid_row_never_sent(
    voximplant_conn, voxsms_db, run_dag, tmp_path
):
    frame = pd.DataFrame(
        {"phone": [*MARKED, *NAMED], "first_name": [*MARKERS, *NAMED.values()]}, dtype=object
    )
    path = tmp_path / "recipients.csv"
    frame.to_csv(path, index=False)
    assert "\\N" in path.read_text() and "NULL" in path.read_text()
    with DAG("voxsms_test_null_markers", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients_path=str(path),
            recipients_chunk_rows=4,
            text="Hi {first_name}, your order has shipped.",
            src_number="VoxDemo",
            results_conn_id=voxsms_db,
        )
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    sent = {m["destination_number"]: m["text"] for m in voximplant_conn.state.messages_snapshot()}
    assert sent == {n: f"Hi {name}, your order has shipped." for n, name in NAMED.items()}
    summary = xcom(tis["send"])
    assert (summary["recipients"], summary["invalid"], summary["accepted"]) == (13, 11, 2)
    rows = read_outcomes(summary["results"])
    invalid = rows[rows["outcome"] == "invalid"]
    assert set(invalid["destination_number"].str.lstrip("+")) == set(MARKED)
    assert set(invalid["reason"]) == {"placeholder {first_name} is empty"}
