"""Extract recipients from a CSV, send them one SMS each, and log every failed number to a table.

Params (override with ``--conf``): ``recipients_path`` (CSV with a ``phone`` column and an
optional ``text`` column; empty texts get ``text``), ``src_number`` (SenderID) and ``text``.
Failed numbers land in ``sms_failed_numbers`` on connection ``voxsms_db`` (SQLite or PostgreSQL).
They are logged whether the send succeeded or failed (the operator pushes them before it
fails), and the run fails when the send failed or the logging failed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from airflow.sdk import Param, dag, task

from airflow_provider_voxsms.failed_numbers import log_failed_numbers
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"
COUNTS = ("recipients", "accepted", "failed", "not_sent", "unknown", "invalid", "duplicates")


def read_recipients(path: str, default_text: str) -> pd.DataFrame:
    """Read a recipients CSV as text (so numbers keep their +, 00 and leading zeros)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if "text" in frame.columns:
        frame["text"] = frame["text"].fillna(default_text)
    else:
        frame["text"] = default_text
    return frame


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["voxsms", "example"],
    params={
        "recipients_path": Param(str(SAMPLE_RECIPIENTS), type="string"),
        "src_number": Param("VoxDemo", type="string", description="SenderID"),
        "text": Param("Your order has shipped. Reply STOP to opt out.", type="string"),
    },
)
def voxsms_campaign():
    @task
    def extract(params=None) -> pd.DataFrame:
        return read_recipients(params["recipients_path"], params["text"])

    recipients = extract()
    send = A2PSendSmsOperator(
        task_id="send",
        recipients=recipients,
        text_column="text",
        src_number="{{ params.src_number }}",
        default_region="GB",
        ledger_conn_id="voxsms_db",  # retries and cleared tasks never re-send
    )

    @task
    def log_failed(ti=None) -> int:
        failed = ti.xcom_pull(task_ids="send", key="failed_numbers")
        if failed is None:  # the send task failed before it had a result
            return 0
        return log_failed_numbers(
            failed, conn_id="voxsms_db", dag_id=ti.dag_id, run_id=ti.run_id, task_id="send"
        )

    @task
    def report(summary: dict) -> dict:
        """The campaign's counts, for whatever comes next; runs only when the send succeeded."""
        return {key: summary[key] for key in COUNTS}

    # log_failed is a teardown: it runs when the send is done, failed or not, and clearing the
    # send clears extract (its setup) and log_failed too. on_failure_fail_dagrun=True: a failed
    # log fails the run, as the table would miss numbers. Such a teardown is a leaf like any
    # task, so the send is no leaf: report, an ordinary task after the send, is what fails the
    # run (upstream_failed) when the send failed.
    report(send.output)
    send >> log_failed().as_teardown(setups=recipients, on_failure_fail_dagrun=True)


voxsms_campaign()
