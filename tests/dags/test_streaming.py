"""Recipients the operator reads itself, a chunk at a time (``recipients_sql``,
``recipients_path``), and outcomes written to tables (``results_conn_id``), in real DAG runs
against the emulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from airflow.sdk import DAG
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.sql import db_api_hook

COUNTS = (
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
)
NUMBERS = [f"447700900{i:03d}" for i in range(250)]


def sent(server) -> Counter:
    return Counter((m["destination_number"], m["text"]) for m in server.state.messages_snapshot())


def adds_up(summary: dict) -> None:
    assert sum(summary[k] for k in COUNTS) == summary["recipients"], summary


def recipients_frame() -> pd.DataFrame:
    """250 numbers; every 10th repeated in another format further down (a copy in a later
    chunk), two invalid rows, one opted out."""
    phones = [f"+{n}" for n in NUMBERS]
    copies = ["0" + n[2:] for n in NUMBERS[::10]]  # national format of the same numbers
    return pd.DataFrame({"phone": [*phones, "12", *copies, "not a number"]})


def outcomes(conn_id: str, task_id: str = "send") -> pd.DataFrame:
    return db_api_hook(conn_id).get_pandas_df(
        "SELECT destination_number, input_number, outcome, message_id, reason "
        f"FROM voxsms_results_outcomes WHERE task_id = '{task_id}'"
    )


@pytest.mark.parametrize("source", ["sql", "csv", "parquet", "directory"])
def test_a_streamed_campaign_sends_each_number_once_across_chunks_and_writes_every_outcome(
    source, voximplant_conn, voxsms_db, run_dag, tmp_path
):
    frame = recipients_frame()
    kwargs: dict = {}
    if source == "sql":
        hook = db_api_hook(voxsms_db)
        hook.run("DROP TABLE IF EXISTS stream_recipients")
        hook.run("CREATE TABLE stream_recipients (id INTEGER, phone TEXT)")
        hook.insert_rows("stream_recipients", list(enumerate(frame["phone"])), ["id", "phone"])
        kwargs = {
            "recipients_sql": "SELECT phone FROM stream_recipients ORDER BY id",
            "recipients_conn_id": voxsms_db,
        }
    elif source == "csv":
        frame.to_csv(tmp_path / "r.csv", index=False)
        kwargs = {"recipients_path": str(tmp_path / "r.csv")}
    elif source == "parquet":
        frame.to_parquet(tmp_path / "r.parquet", index=False)
        kwargs = {"recipients_path": f"file://{tmp_path / 'r.parquet'}"}
    else:
        (tmp_path / "d").mkdir()
        frame.iloc[:100].to_parquet(tmp_path / "d" / "part-0.parquet", index=False)
        frame.iloc[100:].to_csv(tmp_path / "d" / "part-1.csv", index=False)
        kwargs = {"recipients_path": str(tmp_path / "d")}
    with DAG(f"voxsms_test_stream_{source}", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello",
            default_region="GB",
            recipients_chunk_rows=64,
            suppression_list=[NUMBERS[3]],
            ledger_conn_id=voxsms_db,
            results_conn_id=voxsms_db,
            **kwargs,
        )
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert sent(voximplant_conn) == {(n, "Hello"): 1 for n in NUMBERS if n != NUMBERS[3]}
    summary = xcom(tis["send"])
    adds_up(summary)
    assert summary["recipients"] == len(frame)
    assert (summary["accepted"], summary["duplicates"], summary["invalid"]) == (249, 25, 2)
    assert summary["suppressed"] == 1 and summary["distinct_texts"] == 1
    rows = outcomes(voxsms_db)
    assert len(rows) == len(frame), "one row per input row"
    assert rows["outcome"].value_counts().to_dict() == {
        "accepted": 249,
        "duplicate": 25,
        "invalid": 2,
        "suppressed": 1,
    }
    accepted = rows[rows["outcome"] == "accepted"]
    assert accepted["destination_number"].is_unique and accepted["message_id"].notna().all()
    assert set(rows.loc[rows["outcome"] == "duplicate", "input_number"]) == {
        "0" + n[2:] for n in NUMBERS[::10]
    }
    where = xcom(tis["send"], "accepted_numbers")
    assert where["table"] == "voxsms_results_outcomes" and where["rows"] == 249
    assert where["outcomes"] == ["accepted"] and where["task_id"] == "send"
    assert summary["results"] == {k: v for k, v in where.items() if k not in ("outcomes", "rows")}
