"""Extract recipients from a CSV, send them one SMS each, and log every failed number to a table.

Params (override with ``--conf``): ``recipients_path`` (CSV with a ``phone`` column and an
optional ``text`` column; empty texts get ``text``), ``src_number`` (SenderID) and ``text``.
Failed numbers land in ``sms_failed_numbers`` on connection ``voxsms_db`` (SQLite or PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from airflow.sdk import Param, dag, task

from airflow_provider_voxsms.failed_numbers import log_failed_numbers
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"


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

    send = A2PSendSmsOperator(
        task_id="send",
        recipients=extract(),
        text_column="text",
        src_number="{{ params.src_number }}",
        default_region="GB",
        ledger_conn_id="voxsms_db",  # retries and cleared tasks never re-send
    )

    @task(trigger_rule="all_done")
    def log_failed(ti=None) -> int:
        failed = ti.xcom_pull(task_ids="send", key="failed_numbers")
        if failed is None:  # the send task failed before it had a result
            return 0
        return log_failed_numbers(
            failed, conn_id="voxsms_db", dag_id=ti.dag_id, run_id=ti.run_id, task_id="send"
        )

    send >> log_failed()


voxsms_campaign()
