"""A personal text to every customer in a table, never to those who opted out, and only at a
decent hour in the customer's own time zone; failed and deferred numbers logged to tables.

On connection ``voxsms_db`` (SQLite or PostgreSQL, through common-sql) the DAG reads two tables
it does not create (``make demo`` seeds them, see ``scripts/demo.py``):

- ``voxsms_customers``: ``phone`` plus any columns the text names, e.g. ``first_name`` and
  ``code`` (keep codes as text, so leading zeros stay);
- ``voxsms_opt_outs``: ``phone``, the numbers that must never be texted, written any way
  (``+44 7443 332212`` suppresses ``07443332212``).

``extract`` reads the customers (every column) and fails, without retries, naming the table to
seed when either table cannot be read. ``send`` renders the text per row (param ``text``,
default ``"Hi {first_name}, your code is {code}."``; a row whose placeholder value is empty is
invalid), drops the opted-out numbers, and sends only to numbers whose local time is inside
``SEND_WINDOW``; the others are not sent and land in ``sms_deferred_numbers`` (``dag_id``,
``run_id``, ``task_id``, ``map_index``, ``destination_number``, ``time_zone``,
``next_window_start`` in UTC, ``logged_at``), replaced per task instance when it runs again.
A new DAG run is a new campaign: to text the deferred numbers later, send to those rows of
``sms_deferred_numbers`` after their ``next_window_start``, or use ``outside_window="wait"``
(the task then waits for each window and goes on until every row is sent).

Then, as in ``voxsms_campaign``: ``delivery`` follows the accepted messages (statuses in
``sms_delivery_status``), also those of a send that failed part-way (``trigger_rule=
"all_done"``), failed numbers go to ``sms_failed_numbers`` under the task that found them
(``send``: stages ``validation``, ``api``, ``not_sent``; ``delivery``: stage ``delivery``), and
the run fails when the send, the delivery report or the logging failed.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime

import pandas as pd
from airflow.sdk import Param, XComArg, dag, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.storage import log_failed_numbers
from airflow_provider_voxsms.storage.key import TASK_COLUMNS
from airflow_provider_voxsms.storage.schema import TableSchema
from airflow_provider_voxsms.storage.sql import check_table_name, db_api_hook, sql_texts

CONN_ID = "voxsms_db"
CUSTOMERS_TABLE = "voxsms_customers"
OPT_OUTS_TABLE = "voxsms_opt_outs"
DEFERRED_TABLE = "sms_deferred_numbers"
# Local hours [start, end) in each recipient's own time zone(s). send_window is not a templated
# field (the operator checks it when the DAG is parsed), so it is set here, not as a param.
SEND_WINDOW = ("09:00", "20:00")
# The zone for numbers whose zone phonenumbers does not know: this audience's home.
WINDOW_TIMEZONE = "Europe/London"
REGION = "GB"  # national numbers in the table (07443 332212) are British
COUNTS = (
    "recipients",
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
    "distinct_texts",
)
DELIVERY_TIMEOUT_S = 15 * 60  # as in voxsms_campaign: an example run ends within minutes
DELIVERY_POLL_INTERVAL_S = 15


def read_table(conn_id: str, table: str) -> pd.DataFrame:
    """Every row and column of ``table``, as the database gives them; a table that cannot be
    read fails the task without retries and says what to create."""
    check_table_name(table)
    hook = db_api_hook(conn_id)
    try:
        with closing(hook.get_conn()) as conn, closing(conn.cursor()) as cur:
            cur.execute(f"SELECT * FROM {table}")  # table: a checked plain identifier
            columns = [column[0] for column in cur.description]
            rows = cur.fetchall()
    except Exception as err:
        said = " ".join(str(err).split())  # PostgreSQL's errors span lines
        raise AirflowFailException(
            f"Cannot read table {table} on connection {conn_id!r} ({type(err).__name__}: "
            f"{said}). This DAG reads customers from {CUSTOMERS_TABLE} (phone, and the columns "
            f"the text names: first_name, code) and opt-outs from {OPT_OUTS_TABLE} (phone) "
            "but does not create them: create and seed them first (`make demo` does, see "
            "scripts/demo.py). Nothing was sent."
        ) from err
    return pd.DataFrame([tuple(row) for row in rows], columns=columns, dtype=object)


DEFERRED_NUMBERS = TableSchema(
    key=TASK_COLUMNS,
    columns=(
        "destination_number TEXT NOT NULL",
        "time_zone TEXT",
        "next_window_start TIMESTAMP",
        "logged_at TIMESTAMP NOT NULL",
    ),
    indexes={"ti": ("dag_id", "run_id", "task_id")},
)


def log_deferred_numbers(
    deferred: pd.DataFrame,
    *,
    conn_id: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int = -1,
    table: str = DEFERRED_TABLE,
) -> int:
    """Replace one task instance's deferred numbers (the send's XCom ``deferred_numbers``) in
    ``table``, created if absent, in one transaction; return the rows written.

    ``next_window_start`` (UTC ISO text in the XCom) is stored as a UTC timestamp, NULL when the
    number's zones never share the window; ``logged_at`` is the UTC time of the call.
    """
    check_table_name(table)
    starts = pd.to_datetime(deferred["next_window_start"], utc=True, format="ISO8601")
    key = dict(zip(TASK_COLUMNS, (dag_id, run_id, task_id, int(map_index)), strict=True))
    return DEFERRED_NUMBERS.replace(
        conn_id,
        table,
        key,
        ("destination_number", "time_zone", "next_window_start", "logged_at"),
        [
            sql_texts(deferred["destination_number"]),
            sql_texts(deferred["time_zone"]),
            [None if pd.isna(s) else s.tz_convert(None).isoformat(sep=" ") for s in starts],
        ],
    )


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["voxsms", "example"],
    params={
        "src_number": Param("VoxDemo", type="string", description="SenderID"),
        "text": Param(
            "Hi {first_name}, your code is {code}.",
            type="string",
            description="{column} placeholders name columns of voxsms_customers",
        ),
    },
)
def voxsms_personalised_campaign():
    @task
    def extract() -> pd.DataFrame:
        read_table(CONN_ID, OPT_OUTS_TABLE)  # fails here, before the send, when it is missing
        return read_table(CONN_ID, CUSTOMERS_TABLE)

    customers = extract()
    send = A2PSendSmsOperator(
        task_id="send",
        recipients=customers,
        text="{{ params.text }}",  # Jinja first, then {first_name} and {code} per row
        src_number="{{ params.src_number }}",
        default_region=REGION,
        suppression_sql=f"SELECT phone FROM {OPT_OUTS_TABLE}",
        suppression_conn_id=CONN_ID,
        send_window=SEND_WINDOW,
        window_timezone=WINDOW_TIMEZONE,
        # outside_window="skip" (the default): rows outside their window are listed in the
        # XCom deferred_numbers (logged below) and not sent by this run.
        ledger_conn_id=CONN_ID,  # retries and cleared tasks never re-send
    )
    delivery = A2PSmsDeliveryReportOperator(
        task_id="delivery",
        messages=XComArg(send, key="accepted_numbers"),
        src_number="{{ params.src_number }}",
        timeout=DELIVERY_TIMEOUT_S,
        poll_interval=DELIVERY_POLL_INTERVAL_S,
        report_conn_id=CONN_ID,  # table sms_delivery_status
        trigger_rule="all_done",  # what a failed send accepted is followed too
    )

    @task
    def log_numbers(ti=None) -> dict:
        """Failed numbers (each task's under its own task id) into sms_failed_numbers, and the
        send's deferred numbers into sms_deferred_numbers."""
        written = {"failed": 0, "deferred": 0}
        for task_id in ("send", "delivery"):
            failed = ti.xcom_pull(task_ids=task_id, key="failed_numbers")
            if failed is not None:  # None: that task failed (or never ran) before its result
                written["failed"] += log_failed_numbers(
                    failed, conn_id=CONN_ID, dag_id=ti.dag_id, run_id=ti.run_id, task_id=task_id
                )
        deferred = ti.xcom_pull(task_ids="send", key="deferred_numbers")
        if deferred is not None:
            written["deferred"] = log_deferred_numbers(
                deferred, conn_id=CONN_ID, dag_id=ti.dag_id, run_id=ti.run_id, task_id="send"
            )
        return written

    @task
    def report(summary: dict, delivered: dict) -> dict:
        """The campaign's counts; runs only when the send and the delivery report succeeded."""
        undelivered = delivered["messages"] - delivered["delivered"] - delivered["pending"]
        return {
            **{key: summary[key] for key in COUNTS},
            "delivered": delivered["delivered"],
            "failed_on_delivery": undelivered,
            "pending": delivered["pending"],
        }

    # As in voxsms_campaign: delivery runs once the send is done, whatever its end;
    # log_numbers is a teardown (it runs when the send and the delivery report are done,
    # failed or not; clearing the send clears extract and it too), a failed log fails the run
    # (on_failure_fail_dagrun=True), and report, an ordinary task after both, is what fails
    # the run when the send or the delivery report failed.
    report(send.output, delivery.output)
    [send, delivery] >> log_numbers().as_teardown(setups=customers, on_failure_fail_dagrun=True)


voxsms_personalised_campaign()
