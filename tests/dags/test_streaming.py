"""Recipients the operator reads itself, a chunk at a time (``recipients_sql``,
``recipients_path``), and outcomes written to tables (``results_conn_id``), in real DAG runs
against the emulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from airflow.sdk import DAG
from dag_runs import xcom
from test_campaign_rules import NEW_YORK, UK, adds_up, clock_at, sent

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.storage.sql import db_api_hook

NUMBERS = [f"447700900{i:03d}" for i in range(250)]


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


def csv_source(tmp_path, frame: pd.DataFrame) -> str:
    frame.to_csv(tmp_path / "recipients.csv", index=False)
    return str(tmp_path / "recipients.csv")


def test_a_stop_mid_stream_leaves_later_chunks_not_sent_and_the_retry_sends_each_once(
    voximplant_conn, voxsms_db, run_dag, tmp_path
):
    """Money runs out during the second chunk (a request that starts below the limit is
    processed whole: two chunks of 64 go out): every later chunk is ``not_sent`` (counted,
    in the table); the retry resumes from the ledger, replaces the task's rows, and every
    number ends accepted exactly once."""
    rows = pd.DataFrame({"phone": NUMBERS[:200]})
    voximplant_conn.state.set_faults(insufficient_money_after=100)
    first: dict = {}

    def top_up(context):
        first.update(outcomes(voxsms_db)["outcome"].value_counts().to_dict())
        voximplant_conn.state.set_faults(insufficient_money_after=None)

    with DAG("voxsms_test_stream_stop", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello",
            recipients_path=csv_source(tmp_path, rows),
            recipients_chunk_rows=64,
            max_concurrency=1,
            ledger_conn_id=voxsms_db,
            results_conn_id=voxsms_db,
            retries=1,
            retry_delay=timedelta(0),
            on_retry_callback=top_up,
        )
    tis = run_dag(dag)
    assert first == {"accepted": 128, "not_sent": 72}, first
    assert tis["send"].state == "success" and tis["send"].try_number == 2
    assert sent(voximplant_conn) == {(n, "Hello"): 1 for n in NUMBERS[:200]}
    summary = xcom(tis["send"])
    assert summary["accepted"] == 200 and summary["earlier"] == 128
    final = outcomes(voxsms_db)
    assert len(final) == 200 and set(final["outcome"]) == {"accepted"}
    assert final["destination_number"].is_unique


def test_the_delivery_report_follows_the_messages_a_send_wrote_to_its_results_table(
    voximplant_conn, voximplant_delivery, voxsms_db, run_dag, tmp_path
):
    from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator

    voximplant_delivery(by_last_digit="7=FAILED")
    rows = pd.DataFrame({"phone": NUMBERS[:40]})
    with DAG("voxsms_test_stream_delivery", schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello",
            recipients_path=csv_source(tmp_path, rows),
            recipients_chunk_rows=16,
            results_conn_id=voxsms_db,
        )
        A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=send.output,
            poll_interval=1,
            timeout=60,
            report_conn_id=voxsms_db,
        )
    tis = run_dag(dag)
    report = xcom(tis["delivery"])
    assert report["messages"] == 40 and report["pending"] == 0
    assert report["failed"] == sum(n.endswith("7") for n in NUMBERS[:40]) == 4
    assert report["delivered"] == 36
    statuses = db_api_hook(voxsms_db).get_pandas_df(
        "SELECT delivery_status FROM sms_delivery_status WHERE task_id = 'delivery'"
    )
    assert statuses["delivery_status"].value_counts().to_dict() == {"DELIVERED": 36, "FAILED": 4}
    where = xcom(tis["delivery"], "failed_numbers")
    assert where["table"] == "sms_delivery_status" and where["rows"] == 4, "no rows in XCom"
    assert xcom(tis["delivery"], "delivery_status")["rows"] == 40


def test_a_streamed_campaign_waits_for_windows_and_resumes_every_chunk_from_the_ledger(
    voximplant_conn, voxsms_db, run_dag, monkeypatch, tmp_path
):
    """13:59:57 UTC, chunks of two mixing London (inside 09-20) and New York (opens in 3 s):
    the first pass sends London from every chunk and defers; the resumed pass reads the file
    again, skips what the ledger settled, and sends New York; one results row per input row."""
    clock_at(monkeypatch, datetime(2026, 12, 1, 13, 59, 57, tzinfo=UTC))
    rows = pd.DataFrame({"phone": [UK[0], NEW_YORK[0], UK[1], NEW_YORK[1], UK[2]]})
    with DAG("voxsms_test_stream_wait", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello",
            recipients_path=csv_source(tmp_path, rows),
            recipients_chunk_rows=2,
            send_window=("09:00", "20:00"),
            outside_window="wait",
            deferrable=True,
            ledger_conn_id=voxsms_db,
            results_conn_id=voxsms_db,
        )
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert sent(voximplant_conn) == {(n, "Hello"): 1 for n in [*UK[:3], *NEW_YORK]}
    messages = voximplant_conn.state.messages_snapshot()
    first_ny = min(i for i, m in enumerate(messages) if m["destination_number"] in NEW_YORK)
    assert all(m["destination_number"] in NEW_YORK for m in messages[first_ny:])
    summary = xcom(tis["send"])
    assert summary["accepted"] == 5 and summary["earlier"] == 3 and summary["outside_window"] == 0
    final = outcomes(voxsms_db)
    assert len(final) == 5 and set(final["outcome"]) == {"accepted"}
