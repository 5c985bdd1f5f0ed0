"""Scale out: split a large recipient list into shards and send them as mapped task instances.

``A2PSendSmsOperator.partial(...).expand(recipients=...)`` gives one task instance per shard,
which Celery or Kubernetes workers run in parallel. Rows are sharded by their normalised number,
so every copy of a number lands in the same shard and is still sent only once. A final task
gathers every shard's failed numbers into ``sms_failed_numbers``, pulling each map index by
its number: a list of every shard's XCom skips the shards that pushed none (and is no list at
all for one shard), so its positions are not map indexes. It runs whether the shards succeeded
or failed, and the run fails when any shard failed or the gathering failed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from airflow.sdk import Param, conf, dag, task

from airflow_provider_voxsms.failed_numbers import log_failed_numbers
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.sms.recipients import normalise_phones

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"
REGION = "GB"
COUNTS = ("recipients", "accepted", "failed", "not_sent", "unknown", "invalid", "duplicates")


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
    def gather_failed(ti=None) -> int:
        written = 0
        for map_index in range(ti.xcom_pull(task_ids="shard", key="shard_count") or 0):
            failed = ti.xcom_pull(task_ids="send", key="failed_numbers", map_indexes=map_index)
            if failed is not None:  # None: that shard failed before pushing its outputs
                written += log_failed_numbers(
                    failed,
                    conn_id="voxsms_db",
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    task_id="send",
                    map_index=map_index,
                )
        return written

    @task
    def report(summaries) -> dict:
        """The campaign's counts over every shard; runs only when every shard succeeded."""
        summaries = list(summaries)
        return {key: sum(summary[key] for summary in summaries) for key in COUNTS}

    # gather_failed is a teardown: it runs when every shard is done, failed or not, and clearing
    # send clears shard (its setup) and gather_failed too. on_failure_fail_dagrun=True: a failed
    # gathering fails the run, as the table would miss numbers. Such a teardown is a leaf like
    # any task, so the send is no leaf: report, an ordinary task after the send, is what fails
    # the run (upstream_failed) when a shard failed.
    report(send.output)
    send >> gather_failed().as_teardown(setups=shards, on_failure_fail_dagrun=True)


voxsms_sharded_campaign()
