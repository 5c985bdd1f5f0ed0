"""Scale out: split a large recipient list into Parquet shards and send them as mapped task
instances, with no recipient rows in XCom.

Tasks:

- ``split`` reads the source a chunk at a time (``recipient_chunks``: the file or directory at
  param ``recipients_path``, CSV or Parquet, local or any object-storage URL; or, when param
  ``recipients_sql`` is set, that query on ``recipients_conn_id``), normalises each chunk's
  numbers and assigns every row to shard ``hash(normalised number) % shards`` (an invalid
  number is keyed on its raw text), so every copy of a number, however it is written, lands in
  the same shard and is deduplicated there. Each chunk's rows are appended per shard as
  ``<shards_path>/<dag_id>/<run_id>/shard-NNNN/part-NNNN.parquet`` (the run id with every
  character other than letters, digits, ``_`` and ``-`` replaced by ``_``, plus a short hash of
  the real run id when anything was replaced). Memory is bounded by ``chunk_rows``, not by the
  campaign. It returns the shard directories' URLs: the run's only hand-off to the shards. At
  most ``[core] max_map_length`` shards; empty shards are not created (an empty source gives
  none, and the run ends without sending).
- ``shard`` (a task group mapped over the shard directories: map index i is shard i) holds
  two tasks, whose ids stay ``send`` and ``delivery``:

  - ``send`` is ``A2PSendSmsOperator`` reading its shard with ``recipients_path``: it
    normalises, deduplicates, sends, settles, and writes one row per input row to
    ``voxsms_results_outcomes`` on ``voxsms_db`` (outcome ``accepted`` with ``message_id``,
    ``failed`` with ``error_code``, ``not_sent``, ``unknown``, ``invalid``, ``duplicate``, ...;
    under ``task_id`` send and the shard's ``map_index``). The send ledger on ``voxsms_db``
    makes its retries (2, 15 s apart: a lost worker) and cleared shards resume instead of
    sending again.
  - ``delivery`` follows the messages its shard's send accepted, which it reads from the
    results table a block at a time (the send's ``accepted_numbers`` XCom says where they
    are), and writes every message's status to ``sms_delivery_status`` under the shard's map
    index. It runs once its own send is done, whatever its end (``trigger_rule="all_done"``):
    a send that failed part-way (the money ran out) pushed where its accepted rows are before
    it failed, and they are followed all the same; a send that pushed nothing skips it. With
    param ``deferrable`` it waits in the triggerer instead of a worker slot (the operator's
    ``deferrable`` is not templated, so a ``pre_execute`` hook sets it from the run's params).

  A failed shard blocks nobody else's report: each delivery report waits for its own send.
- ``report`` sums every shard's send and delivery counts (its return value); it runs only when
  every send and every delivery report succeeded, and otherwise ends ``upstream_failed``,
  which fails the run (a green run means the whole campaign did what it says).
- ``cleanup_shards``, a teardown of ``split``, deletes the run's shard directory once every
  send shard is done, whether they succeeded or failed. Clearing a ``send`` shard clears
  ``split`` (its setup) too, so the shards are written again before it resumes.

The failed numbers are in the tables, no longer gathered into ``sms_failed_numbers``: the
send's in ``voxsms_results_outcomes`` (``outcome IN ('invalid', 'failed', 'not_sent',
'unknown')``; ``input_number`` as the source wrote it), the ones that failed on delivery in
``sms_delivery_status`` (``delivery_status <> 'DELIVERED'``). Copying them into a third table
would read millions of rows through one task for no new information. Both tables are written
as the tasks go, so a failed shard's outcomes and statuses are there too.

What stays in XCom: ``split``'s list of shard URLs; each ``send``'s summary and its
``accepted_numbers``, ``failed_numbers``, ``unknown_numbers`` and ``deferred_numbers``, which
say where the rows are in the results table (connection, table, task key, row count); each
``delivery``'s counts, and its ``delivery_status`` and ``failed_numbers``, which say where its
rows are in ``sms_delivery_status``; ``report``'s sums.

``shards_path`` (param; default env ``VOXSMS_SHARDS_PATH``, else ``file://<tempdir>/
voxsms-shards``, as seen where the DAG is parsed) must be storage that every worker can read,
since any worker may run any shard: a shared volume, or ``s3://bucket/prefix`` (or
``s3://conn_id@bucket/prefix``) through Airflow's object storage. A local temporary directory
only works when every task runs on one machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from airflow.sdk import ObjectStoragePath, Param, XComArg, conf, dag, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.sms.numbers import normalise_phones
from airflow_provider_voxsms.storage.source import DEFAULT_CHUNK_ROWS, recipient_chunks

SAMPLE_RECIPIENTS = Path(__file__).parent / "data" / "recipients.csv"
REGION = "GB"
PHONE_COLUMN = "phone"
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
)
DEFAULT_SHARDS_PATH = os.environ.get("VOXSMS_SHARDS_PATH") or (
    f"file://{Path(tempfile.gettempdir()) / 'voxsms-shards'}"
)
DELIVERY_TIMEOUT_S = 15 * 60  # as in voxsms_campaign: an example run ends within minutes
DELIVERY_POLL_INTERVAL_S = 15
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def storage_path(url: str) -> ObjectStoragePath:
    """An object-storage URL (``s3://...``, ``file:///...``) or a local path, as a path."""
    return ObjectStoragePath(url if "://" in url else f"file://{Path(url).expanduser().resolve()}")


def path_name(run_id: str) -> str:
    """``run_id`` as one safe path segment: unsafe characters (``:``, ``+``, ``.``, ``/``, ...)
    become ``_``, and a short hash of the real id keeps run ids that differ only there apart."""
    safe = _UNSAFE.sub("_", run_id)
    if safe != run_id:
        safe += "-" + hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return safe


def run_directory(shards_path: str, dag_id: str, run_id: str) -> ObjectStoragePath:
    """Where a run's shards go: ``<shards_path>/<dag_id>/<run_id, made safe>``."""
    return storage_path(shards_path) / dag_id / path_name(run_id)


def shard_keys(phones: pd.Series, shards: int, region: str | None = REGION):
    """Each row's shard: a stable hash of its normalised number (of its raw text when it is not
    a valid number) modulo ``shards``. ``hash_pandas_object`` uses a fixed key, so the same
    number gets the same shard in every process."""
    numbers, _ = normalise_phones(phones, region)
    key = numbers.fillna(phones.astype(str).reset_index(drop=True))
    return pd.util.hash_pandas_object(key, index=False).to_numpy() % shards


def write_shards(chunks: Iterable[pd.DataFrame], where: ObjectStoragePath, shards: int) -> list:
    """Append each chunk's rows to their shards' directories under ``where`` (one Parquet file
    per chunk and shard), after removing what an earlier try left there. Returns the URLs of
    the shard directories that got rows, in shard order. On an error nothing is left behind."""
    if where.exists():
        where.rmdir(recursive=True)
    written: set[int] = set()
    try:
        for number, chunk in enumerate(chunks):
            if PHONE_COLUMN not in chunk.columns:
                raise AirflowFailException(
                    f"The recipients have no {PHONE_COLUMN!r} column (columns: "
                    f"{', '.join(map(str, chunk.columns))}); nothing was sent."
                )
            if chunk.empty:
                continue
            chunk = chunk.reset_index(drop=True)
            for shard, rows in chunk.groupby(shard_keys(chunk[PHONE_COLUMN], shards)):
                directory = where / f"shard-{shard:04d}"
                if shard not in written:
                    directory.mkdir(parents=True, exist_ok=True)
                    written.add(int(shard))
                with (directory / f"part-{number:04d}.parquet").open("wb") as handle:
                    rows.to_parquet(handle, index=False)
    except BaseException:
        if where.exists():
            where.rmdir(recursive=True)
        raise
    return [str(where / f"shard-{shard:04d}") for shard in sorted(written)]


def each_shard(values) -> list:
    """The values of a task in the mapped task group, one per shard. (Pulled from outside the
    group, a single shard's value comes as itself, not as a list of one.)"""
    return [values] if isinstance(values, dict) else list(values)


def deferrable_from_params(context) -> None:
    """pre_execute hook: the delivery report waits in the triggerer when param ``deferrable``
    is true (the operator's ``deferrable`` argument is not a template field)."""
    context["ti"].task.deferrable = bool(context["params"]["deferrable"])


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["voxsms", "example"],
    params={
        "recipients_path": Param(
            str(SAMPLE_RECIPIENTS),
            type="string",
            description="CSV or Parquet file, or a directory of them; local path or URL",
        ),
        "recipients_sql": Param(
            "", type="string", description="a query to read instead (when not empty)"
        ),
        "recipients_conn_id": Param("voxsms_db", type="string"),
        "shards": Param(4, type="integer", minimum=1),
        "shards_path": Param(
            DEFAULT_SHARDS_PATH,
            type="string",
            description="base URL every worker can read (a shared volume or s3://...)",
        ),
        "chunk_rows": Param(DEFAULT_CHUNK_ROWS, type="integer", minimum=1),
        "src_number": Param("VoxDemo", type="string", description="SenderID"),
        "text": Param("Your order has shipped. Reply STOP to opt out.", type="string"),
        "deferrable": Param(False, type="boolean", description="delivery reports in the triggerer"),
    },
)
def voxsms_sharded_campaign():
    @task
    def split(params=None, dag_run=None) -> list[str]:
        shards = max(1, min(params["shards"], conf.getint("core", "max_map_length")))
        if params["recipients_sql"].strip():
            chunks = recipient_chunks(
                sql=params["recipients_sql"],
                conn_id=params["recipients_conn_id"],
                chunk_rows=params["chunk_rows"],
            )
        else:
            chunks = recipient_chunks(
                path=params["recipients_path"], chunk_rows=params["chunk_rows"]
            )
        where = run_directory(params["shards_path"], dag_run.dag_id, dag_run.run_id)
        return write_shards(chunks, where, shards)

    shard_dirs = split()

    @task_group(prefix_group_id=False)  # the task ids stay send and delivery (ledger keys)
    def shard(recipients_path: str):
        """One shard: its send, then its delivery report (map index i: shard i)."""
        send = A2PSendSmsOperator(
            task_id="send",
            recipients_path=recipients_path,
            text="{{ params.text }}",
            src_number="{{ params.src_number }}",
            default_region=REGION,
            ledger_conn_id="voxsms_db",  # retries and cleared shards never re-send
            results_conn_id="voxsms_db",  # one row per input row in voxsms_results_outcomes
            retries=2,
            retry_delay=timedelta(seconds=15),
        )
        delivery = A2PSmsDeliveryReportOperator(
            task_id="delivery",
            # Where the shard's accepted rows are: pushed before a send fails, unlike its
            # summary (send.output), so a send that failed part-way is followed too.
            messages=XComArg(send, key="accepted_numbers"),
            src_number="{{ params.src_number }}",
            timeout=DELIVERY_TIMEOUT_S,
            poll_interval=DELIVERY_POLL_INTERVAL_S,
            report_conn_id="voxsms_db",  # table sms_delivery_status, per map index
            trigger_rule="all_done",  # once its own send is done, whatever its end
            pre_execute=deferrable_from_params,
        )
        return send, delivery

    send, delivery = shard.expand(recipients_path=shard_dirs)

    @task(multiple_outputs=False)  # one XCom, not one per key (as "-> dict" would infer)
    def report(summaries, deliveries) -> dict:
        """The campaign's counts over every shard; runs only when every shard's send and
        delivery report succeeded."""
        summaries, deliveries = each_shard(summaries), each_shard(deliveries)
        counts = {key: sum(summary[key] for summary in summaries) for key in COUNTS}
        delivered = sum(d["delivered"] for d in deliveries)
        pending = sum(d["pending"] for d in deliveries)
        undelivered = sum(d["messages"] for d in deliveries) - delivered - pending
        return {
            "shards": len(summaries),
            **counts,
            "delivered": delivered,
            "failed_on_delivery": undelivered,
            "pending": pending,
        }

    @task
    def cleanup_shards(params=None, dag_run=None) -> None:
        where = run_directory(params["shards_path"], dag_run.dag_id, dag_run.run_id)
        if where.exists():
            where.rmdir(recursive=True)

    # cleanup_shards is a teardown: it runs when every send shard is done, failed or not, and
    # does not fail the run (the shards are copies of the source). A run's state is its
    # leaves', teardowns aside, and a delivery report may succeed after its send failed; so
    # report, an ordinary (all_success) task after every send and delivery report, is what
    # fails the run (upstream_failed) when a shard's send or delivery report failed.
    report(send.output, delivery.output)
    send >> cleanup_shards().as_teardown(setups=shard_dirs)


voxsms_sharded_campaign()
