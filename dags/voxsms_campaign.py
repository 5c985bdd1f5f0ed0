"""Extract recipients from a CSV, send them one SMS each, follow the accepted messages to their
delivery status, and log every failed number to a table.

Params (override with ``--conf``): ``recipients_path`` (CSV with a ``phone`` column and an
optional ``text`` column; empty texts get ``text``), ``src_number`` (SenderID) and ``text``.
On connection ``voxsms_db`` (SQLite or PostgreSQL): every message's delivery status lands in
``sms_delivery_status`` (written by the ``delivery`` task), and failed numbers in
``sms_failed_numbers``: the send's (stages ``validation``, ``api``, ``not_sent``) under task id
``send``, the delivery report's (stage ``delivery``: FAILED, EXPIRED, REJECTED, ABORTED or
UNKNOWN) under task id ``delivery``. They are logged whether the send and the report succeeded
or failed (the operators push them before they fail).

Every message the send accepted is followed, also when the send failed part-way (the money ran
out: what went out before is followed all the same): ``delivery`` runs once the send is
done, whatever its end (``trigger_rule="all_done"``), on the ``accepted_numbers`` the send
pushed before it failed; it is skipped when the send pushed none (it failed before saying what
it accepted, or never ran). The run fails when the send, the delivery report or the logging
failed: a green run means the campaign did what it says.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from airflow.sdk import Param, XComArg, dag, task

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.storage import log_failed_numbers

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"
COUNTS = ("recipients", "accepted", "failed", "not_sent", "unknown", "invalid", "duplicates")
# An example run should end within minutes: most messages are final within a few, and what is
# still QUEUED or DISPATCHED at the timeout is reported as pending, not failed. A production
# campaign would wait longer (the operator's default is 6 hours) and defer while it waits.
DELIVERY_TIMEOUT_S = 15 * 60
DELIVERY_POLL_INTERVAL_S = 15


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
    delivery = A2PSmsDeliveryReportOperator(
        task_id="delivery",
        messages=XComArg(send, key="accepted_numbers"),
        src_number="{{ params.src_number }}",
        timeout=DELIVERY_TIMEOUT_S,
        poll_interval=DELIVERY_POLL_INTERVAL_S,
        report_conn_id="voxsms_db",  # table sms_delivery_status
        trigger_rule="all_done",  # what a failed send accepted is followed too
    )

    @task
    def log_failed(ti=None) -> int:
        """Each task's failed numbers under its own task id: a task instance owns its rows, so
        the table says which step found a failure, and matches sms_delivery_status's key."""
        written = 0
        for task_id in ("send", "delivery"):
            failed = ti.xcom_pull(task_ids=task_id, key="failed_numbers")
            if failed is not None:  # None: that task failed (or never ran) before its result
                written += log_failed_numbers(
                    failed, conn_id="voxsms_db", dag_id=ti.dag_id, run_id=ti.run_id, task_id=task_id
                )
        return written

    @task
    def report(summary: dict, delivered: dict) -> dict:
        """The campaign's counts, for whatever comes next; runs only when the send and the
        delivery report succeeded (else it ends upstream_failed, which fails the run)."""
        undelivered = delivered["messages"] - delivered["delivered"] - delivered["pending"]
        return {
            **{key: summary[key] for key in COUNTS},
            "delivered": delivered["delivered"],
            "failed_on_delivery": undelivered,
            "pending": delivered["pending"],
        }

    # log_failed is a teardown: it runs when the send and the delivery report are done, failed
    # or not, and clearing the send clears extract (its setup) and log_failed too.
    # on_failure_fail_dagrun=True: a failed log fails the run, as the table would miss numbers.
    # A run's state is its leaves', teardowns aside, and delivery (all_done) may succeed after
    # a failed send; so neither is a leaf: report, an ordinary (all_success) task after both,
    # is what fails the run (upstream_failed) when the send or the delivery report failed.
    report(send.output, delivery.output)
    [send, delivery] >> log_failed().as_teardown(setups=recipients, on_failure_fail_dagrun=True)


voxsms_campaign()
