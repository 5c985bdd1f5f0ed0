"""A campaign's rows written through the storage code the operators use, without them.

For ``python -m bench.campaign_page --through-storage``: 4M recipients through the send and
the delivery report against the emulator take far longer than the page is worth measuring on
2 vCPUs. The rows are the ones ``bench.campaign_page.recipients_csv`` gives the operators
(UK mobiles; 1 % copies, 0.1 % not numbers, 0.1 % refused with code 509; deliveries to
numbers ending in 3 fail), and they reach the tables as the tasks write them:
``ResultsTable.write`` a chunk at a time (``recipients_chunk_rows``' default of 100,000) and
``DeliveryStatusTable.write`` a block at a time, each storing the campaign's counts when it
finishes without error. Returns what the two tasks would return (their counts).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

CHUNK = 100_000
BLOCK = 10_000  # the report writes its rows a block at a time


def outcome_chunk(start: int, stop: int) -> pd.DataFrame:
    """Rows ``start`` to ``stop`` of the campaign, as the runner hands them to the table."""
    i = np.arange(start, stop)
    numbers = (447_400_000_000 + i * 7).astype(str)
    outcome = np.full(len(i), "accepted", dtype=object)
    outcome[i % 100 == 1] = "duplicate"  # the row before is its national-format copy
    outcome[i % 1000 == 50] = "invalid"
    outcome[i % 1000 == 75] = "failed"
    invalid = outcome == "invalid"
    rows = pd.DataFrame(
        {
            "destination_number": np.where(invalid, None, numbers),
            "input_number": np.where(invalid, "not a number", "+" + pd.Series(numbers)),
            "outcome": outcome,
            "message_id": pd.array(np.where(outcome == "accepted", i + 1, 0), dtype="Int64"),
            "error_code": pd.array(np.where(outcome == "failed", 509, 0), dtype="Int64"),
            "reason": np.select(
                [invalid, outcome == "failed", outcome == "duplicate"],
                ["not a phone number", "A2P SMS is disabled", "same number as an earlier row"],
                None,
            ),
            "time_zone": None,
            "next_window_start": None,
            "variant": None,
        }
    )
    rows.loc[outcome != "accepted", "message_id"] = pd.NA
    rows.loc[outcome != "failed", "error_code"] = pd.NA
    return rows


def status_block(accepted: pd.DataFrame) -> pd.DataFrame:
    """The report's rows for accepted messages: delivered, or failed for numbers ending in 3."""
    failed = accepted["destination_number"].str.endswith("3").to_numpy()
    return pd.DataFrame(
        {
            "message_id": accepted["message_id"].astype("int64").to_numpy(),
            "destination_number": accepted["destination_number"].to_numpy(),
            "delivery_status": np.where(failed, "FAILED", "DELIVERED"),
            "error_message": np.where(failed, "Absent subscriber", None),
            "fragments": 1,
            "cost": 0.0075,
            "processing_date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
    )


def fill_through_storage(conn_id: str, size: int, ti) -> tuple[dict, dict, float, float]:
    """Write the send's and the report's rows (see the module): their return values' counts,
    with the send's ``results`` location, and the seconds each took."""
    from airflow_provider_voxsms.storage.delivery_status import DeliveryStatusTable
    from airflow_provider_voxsms.storage.key import TASK_COLUMNS, CampaignKey

    send, report = ti("send"), ti("delivery")
    key = CampaignKey(send.dag_id, send.task_id, send.map_index, send.run_id, send.run_id)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with _results(conn_id, key) as table:
        for start in range(0, size, CHUNK):
            chunk = outcome_chunk(start, min(size, start + CHUNK))
            for outcome, n in chunk["outcome"].value_counts().items():
                counts[outcome] = counts.get(outcome, 0) + int(n)
            table.write(chunk)
    sent_s = time.perf_counter() - started
    report_key = (report.dag_id, report.run_id, report.task_id, report.map_index)
    statuses: dict[str, int] = {}
    with DeliveryStatusTable(conn_id, dict(zip(TASK_COLUMNS, report_key, strict=True))) as rows:
        for start in range(0, size, CHUNK):
            chunk = outcome_chunk(start, min(size, start + CHUNK))
            accepted = chunk[chunk["outcome"] == "accepted"]
            for at in range(0, len(accepted), BLOCK):
                block = status_block(accepted.iloc[at : at + BLOCK])
                for status, n in block["delivery_status"].value_counts().items():
                    statuses[status] = statuses.get(status, 0) + int(n)
                rows.write(block)
    followed_s = time.perf_counter() - started - sent_s
    return _summary(counts, size, table.location()), _report(statuses), sent_s, followed_s


def _results(conn_id: str, key):
    from airflow_provider_voxsms.storage.results import ResultsTable

    return ResultsTable(conn_id, "voxsms_results", key)


def _summary(counts: dict[str, int], size: int, location: dict) -> dict:
    """The send's return value's counts (``duplicate`` rows are its ``duplicates``)."""
    keys = ("accepted", "failed", "unknown", "not_sent", "invalid", "suppressed")
    keys += ("outside_window", "capped", "expired", "held_out")
    summary = {k: counts.get(k, 0) for k in keys}
    summary |= {"duplicates": counts.get("duplicate", 0), "recipients": size, "results": location}
    return summary


def _report(statuses: dict[str, int]) -> dict:
    names = ("delivered", "failed", "expired", "rejected", "aborted", "unknown", "pending")
    report = {name: statuses.get(name.upper(), 0) for name in names}
    return report | {"messages": sum(statuses.values())}
