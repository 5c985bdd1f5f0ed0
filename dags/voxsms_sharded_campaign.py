"""Scale out: split a large recipient list into shards and send them as mapped task instances.

``A2PSendSmsOperator.partial(...).expand(recipients=...)`` gives one task instance per shard,
which Celery or Kubernetes workers run in parallel. Rows are sharded by their normalised number,
so every copy of a number lands in the same shard and is still sent only once. Each shard's
accepted messages are then followed to their delivery status by a mapped
``A2PSmsDeliveryReportOperator`` (``delivery``, map index i follows send's map index i;
statuses in ``sms_delivery_status``). A final task gathers every shard's failed numbers into
``sms_failed_numbers``: the send's under task id ``send``, the delivery report's (stage
``delivery``) under task id ``delivery``, each under the shard's map index. It pulls each map
index by its number: a list of every shard's XCom skips the shards that pushed none (and is no
list at all for one shard), so its positions are not map indexes. It runs whether the shards
succeeded or failed, and the run fails when any shard's send or delivery report failed or the
gathering failed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from airflow.sdk import Param, conf, dag, task

from airflow_provider_voxsms.failed_numbers import log_failed_numbers
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.sms.recipients import normalise_phones

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"
REGION = "GB"
COUNTS = ("recipients", "accepted", "failed", "not_sent", "unknown", "invalid", "duplicates")
DELIVERY_TIMEOUT_S = 15 * 60  # as in voxsms_campaign: an example run ends within minutes
DELIVERY_POLL_INTERVAL_S = 15


def split_into_shards(frame: pd.DataFrame, shards: int, region: str | None) -> list[pd.DataFrame]:
    """Split rows into at most ``shards`` non-empty frames, keyed on the normalised number."""
    shards = max(1, min(shards, conf.getint("core", "max_map_length")))
    numbers, _ = normalise_phones(frame["phone"], region)
    key = numbers.fillna(frame["phone"].astype(str).reset_index(drop=True))
    shard_of = pd.util.hash_pandas_object(key, index=False).to_numpy() % shards
    parts = [frame[shard_of == i].reset_index(drop=True) for i in range(shards)]
    return [part for part in parts if len(part)]


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["voxsms", "example"],
    params={
        "recipients_path": Param(str(SAMPLE_RECIPIENTS), type="string"),
        "shards": Param(4, type="integer", minimum=1),
        "src_number": Param("VoxDemo", type="string"),
        "text": Param("Your order has shipped. Reply STOP to opt out.", type="string"),
    },
)
def voxsms_sharded_campaign():
    @task
    def shard(params=None, ti=None) -> list[pd.DataFrame]:
        frame = pd.read_csv(params["recipients_path"], dtype=str, keep_default_na=False)
        shards = split_into_shards(frame, params["shards"], REGION)
        ti.xcom_push(key="shard_count", value=len(shards))  # send's map indexes: 0..count-1
        return shards

    shards = shard()
    send = A2PSendSmsOperator.partial(
        task_id="send",
        text="{{ params.text }}",
        src_number="{{ params.src_number }}",
        default_region=REGION,
        ledger_conn_id="voxsms_db",  # retries and cleared tasks never re-send
    ).expand(recipients=shards)

    @task
    def accepted_per_shard(ti=None) -> list[pd.DataFrame]:
        """Each shard's accepted_numbers, by map index: Airflow maps over return values only
        (not over an XCom with another key). Runs only when every shard's send succeeded."""
        count = ti.xcom_pull(task_ids="shard", key="shard_count") or 0
        return [
            ti.xcom_pull(task_ids="send", key="accepted_numbers", map_indexes=map_index)
            for map_index in range(count)
        ]

    delivery = A2PSmsDeliveryReportOperator.partial(
        task_id="delivery",
        src_number="{{ params.src_number }}",
        timeout=DELIVERY_TIMEOUT_S,
        poll_interval=DELIVERY_POLL_INTERVAL_S,
        report_conn_id="voxsms_db",  # table sms_delivery_status, per map index
    ).expand(messages=send >> accepted_per_shard())

    @task
    def gather_failed(ti=None) -> int:
        written = 0
        for map_index in range(ti.xcom_pull(task_ids="shard", key="shard_count") or 0):
            for task_id in ("send", "delivery"):
                failed = ti.xcom_pull(task_ids=task_id, key="failed_numbers", map_indexes=map_index)
                if failed is not None:  # None: that task failed (or never ran) before its result
                    written += log_failed_numbers(
                        failed,
                        conn_id="voxsms_db",
                        dag_id=ti.dag_id,
                        run_id=ti.run_id,
                        task_id=task_id,
                        map_index=map_index,
                    )
        return written

    @task
    def report(summaries, deliveries) -> dict:
        """The campaign's counts over every shard; runs only when every shard's send and
        delivery report succeeded."""
        summaries, deliveries = list(summaries), list(deliveries)
        counts = {key: sum(summary[key] for summary in summaries) for key in COUNTS}
        delivered = sum(d["delivered"] for d in deliveries)
        pending = sum(d["pending"] for d in deliveries)
        undelivered = sum(d["messages"] for d in deliveries) - delivered - pending
        return {
            **counts,
            "delivered": delivered,
            "failed_on_delivery": undelivered,
            "pending": pending,
        }

    # gather_failed is a teardown: it runs when every shard's send and delivery report are done,
    # failed or not (a failed send leaves accepted_per_shard and delivery upstream_failed), and
    # clearing send clears shard (its setup) and gather_failed too. on_failure_fail_dagrun=True:
    # a failed gathering fails the run, as the table would miss numbers. Such a teardown is a
    # leaf like any task, so neither send nor delivery is a leaf: report, an ordinary task after
    # both, is what fails the run (upstream_failed) when a shard's send or delivery failed.
    report(send.output, delivery.output)
    [send, delivery] >> gather_failed().as_teardown(setups=shards, on_failure_fail_dagrun=True)


voxsms_sharded_campaign()
