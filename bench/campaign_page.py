"""The campaign page's JSON for a streamed campaign of N recipients with its rows in tables.

``python -m bench.campaign_page [--size 200000] [--runs 5] [--postgres]``: an in-process
emulator, a SQLite file (or a throwaway PostgreSQL server) as the results and delivery
connection, a CSV of N UK mobiles (1 % copies written
nationally, 0.1 % not numbers, 0.1 % blocked by the emulator, 2 % failing on delivery), then
``A2PSendSmsOperator.execute()`` (``recipients_path``, ``results_conn_id``) and
``A2PSmsDeliveryReportOperator.execute()`` (``messages`` the send's summary,
``report_conn_id``), as the tasks would run them. Then, ``--runs`` times: what
``GET /voxsms/api/campaign`` computes (``ui.campaign.campaign_view`` over the two tables, new
connection each time) and the page's first 50 failed numbers, timed; the answer is checked
against both return values. The api-server's own cost (auth, metadata look-ups, JSON) is not
in it. Prints a Markdown table (the figures in docs/campaign-page.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONN_ID = "voxsms_bench_page"


@dataclass
class TI:
    """What ``execute()`` needs of a task instance."""

    task_id: str
    dag_id: str = "voxsms_bench_page"
    run_id: str = "manual__bench"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def recipients_csv(path: Path, n: int) -> set[str]:
    """N rows; returns the numbers the emulator is to refuse."""
    numbers = [f"447{400_000_000 + i * 7:09d}" for i in range(n)]  # UK mobiles, all distinct
    rows = [f"+{number}" for number in numbers]
    for i in range(0, len(rows), 100):  # 1 % copies of another row, in national format
        rows[i] = "0" + numbers[i + 1][2:]
    for i in range(50, len(rows), 1000):  # 0.1 % not a number
        rows[i] = "not a number"
    path.write_text("phone\n" + "\n".join(rows) + "\n")
    return {numbers[i] for i in range(75, len(numbers), 1000)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL server, not SQLite"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxsms-bench-page-"))
    if not args.postgres:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = f"sqlite://{work / 'voxsms.db'}"
        return measure(args, work)
    from bench import pg_server

    pg = pg_server()
    bindir = pg.find_pg_bin()
    if bindir is None:
        print("no PostgreSQL binaries found")
        return 2
    with pg.running_postgres(bindir, durable=True) as uri:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = uri
        return measure(args, work)


def measure(args: argparse.Namespace, work: Path) -> int:
    """Run the campaign and its report, then time the page's JSON (see the module)."""

    from airflow_provider_voxsms.emulator.server import EmulatorServer
    from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
    from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
    from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
    from airflow_provider_voxsms.storage.sql import db_api_hook
    from airflow_provider_voxsms.ui import failed_rows
    from airflow_provider_voxsms.ui.campaign import OUTCOME_KEYS, CampaignRows, campaign_view
    from airflow_provider_voxsms.ui.tables import OwnedRows, dialect_of

    blocked = recipients_csv(work / "r.csv", args.size)
    with EmulatorServer() as emulator:
        os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = emulator.connection_json()
        emulator.state.set_faults(
            blocked_numbers=blocked,
            delivery_queued_s=0.2,
            delivery_dispatched_s=0.2,
            delivery_by_last_digit="3=FAILED",
        )
        started = time.perf_counter()
        send = A2PSendSmsOperator(
            task_id="send",
            recipients_path=str(work / "r.csv"),
            text="Your order has shipped",
            src_number="VoxDemo",
            default_region="GB",
            results_conn_id=CONN_ID,
        )
        summary = send.execute({"ti": TI("send")})
        sent_s = time.perf_counter() - started
        report_op = A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=summary,
            src_number="VoxDemo",
            timeout=600,
            poll_interval=1,
            max_poll_interval=2,
            deferrable=False,
            report_conn_id=CONN_ID,
        )
        report = report_op.execute({"ti": TI("delivery")})
        followed_s = time.perf_counter() - started - sent_s

    results = summary["results"]
    statuses_key = {"dag_id": "voxsms_bench_page", "run_id": "manual__bench"}
    statuses_key |= {"task_id": "delivery", "map_index": -1}
    timings, first_page = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        hook = db_api_hook(CONN_ID)
        with closing(hook.get_conn()) as conn:
            mark, dialect = hook.placeholder, dialect_of(conn)
            outcomes = OwnedRows(
                conn, mark, dialect, results["table"], {c: results[c] for c in CAMPAIGN_COLUMNS}
            )
            statuses = OwnedRows(
                conn,
                mark,
                dialect,
                "sms_delivery_status",
                dict(zip(TASK_COLUMNS, statuses_key.values(), strict=True)),
            )
            rows = CampaignRows(summary, outcomes, "table", report, statuses, "table")
            view = campaign_view({"task_id": "send"}, rows)
            t1 = time.perf_counter()
            page = failed_rows.failed_page(
                outcomes, statuses, failed_rows.FailedFilter(), offset=0, limit=50
            )
        timings.append(t1 - t0)
        first_page.append(time.perf_counter() - t1)
    matches = view["outcomes"] == {k: summary[k] for k in OUTCOME_KEYS} and all(
        view["delivery"]["statuses"].get(s.upper(), 0) == report[s]
        for s in ("delivered", "failed", "expired", "rejected", "aborted", "unknown")
    )
    median = statistics.median(timings)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"| measurement ({args.size:,} recipients, {database}) | median | min - max |")
    print("|---|---|---|")
    print(
        f"| campaign JSON (campaign_view, {len(timings)} runs) | {median * 1000:.0f} ms | "
        f"{min(timings) * 1000:.0f} - {max(timings) * 1000:.0f} ms |"
    )
    print(
        f"| first page of failed numbers ({len(page)} rows of "
        f"{sum(view['failed'].values()):,}) | {statistics.median(first_page) * 1000:.0f} ms | "
        f"{min(first_page) * 1000:.0f} - {max(first_page) * 1000:.0f} ms |"
    )
    print(
        f"\nsend {sent_s:.1f} s (accepted {summary['accepted']:,}, failed {summary['failed']:,}, "
        f"invalid {summary['invalid']:,}, duplicates {summary['duplicates']:,}); delivery report "
        f"{followed_s:.1f} s ({report['delivered']:,} delivered of {report['messages']:,}); "
        f"answer equals both return values: {matches}; under 1 s: {median < 1.0}"
    )
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
