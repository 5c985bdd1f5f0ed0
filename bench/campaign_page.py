"""The campaign page's JSON for a streamed campaign of N recipients with its rows in tables.

``python -m bench.campaign_page [--size 200000] [--runs 5] [--postgres] [--through-storage]``:
an in-process emulator, a SQLite file (or a throwaway PostgreSQL server) as the results and
delivery connection, a CSV of N UK mobiles (1 % copies written nationally, 0.1 % not numbers,
0.1 % blocked by the emulator, 10 % failing on delivery: numbers ending in 3), then
``A2PSendSmsOperator.execute()`` (``recipients_path``, ``results_conn_id``) and
``A2PSmsDeliveryReportOperator.execute()`` (``messages`` the send's summary,
``report_conn_id``), as the tasks would run them. ``--through-storage`` skips the operators
and the emulator (4M recipients through them take too long on 2 vCPUs): the same rows reach
the tables through the storage code the operators write with (``ResultsTable``,
``DeliveryStatusTable``, which store the counts when they finish, as in a real run).

Then, ``--runs`` times each, with the stored counts and without them (``use_summary=False``,
the page of a run from before them): what ``GET /voxsms/api/campaign`` computes
(``ui.campaign.campaign_view`` over the two tables, new connection each time) and the page's
first 50 failed numbers (with their count), timed; the answer is checked against both return
values and between the two ways. Also timed: storing the counts, which the send and the
report do once when they finish. The api-server's own cost (auth, metadata look-ups, JSON) is
not in it. Prints a Markdown table (the figures in docs/campaign-page.md).
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
REPORT_KEY = ("voxsms_bench_page", "manual__bench", "delivery", -1)


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
    parser.add_argument(
        "--through-storage",
        action="store_true",
        help="write the rows through the storage code, without the operators and emulator",
    )
    parser.add_argument("--explain", action="store_true", help="print the first page's query plans")
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


def run_operators(work: Path, size: int) -> tuple[dict, dict, float, float]:
    """The send and its delivery report, as the tasks run them, against the emulator:
    their return values and how long each took."""
    from airflow_provider_voxsms.emulator.server import EmulatorServer
    from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
    from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator

    blocked = recipients_csv(work / "r.csv", size)
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
    return summary, report, sent_s, followed_s


def time_page(
    summary: dict, report: dict, use_summary: bool, runs: int
) -> tuple[dict, list, list, list]:
    """The JSON and the first page of failed numbers, ``runs`` times, each on a new
    connection: the last view, the last page, and the two lists of seconds."""
    from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
    from airflow_provider_voxsms.storage.sql import db_api_hook
    from airflow_provider_voxsms.ui import failed_rows
    from airflow_provider_voxsms.ui.campaign import CampaignRows, campaign_view
    from airflow_provider_voxsms.ui.tables import OwnedRows, dialect_of

    results, timings, first_page = summary["results"], [], []
    owner = {c: results[c] for c in CAMPAIGN_COLUMNS}
    report_key = dict(zip(TASK_COLUMNS, REPORT_KEY, strict=True))
    for _ in range(runs):
        t0 = time.perf_counter()
        hook = db_api_hook(CONN_ID)
        with closing(hook.get_conn()) as conn:
            mark, dialect = hook.placeholder, dialect_of(conn)
            outcomes = OwnedRows(conn, mark, dialect, results["table"], owner, use_summary)
            statuses = OwnedRows(
                conn, mark, dialect, "sms_delivery_status", report_key, use_summary
            )
            rows = CampaignRows(summary, outcomes, "table", report, statuses, "table")
            view = campaign_view({"task_id": "send"}, rows)
            t1 = time.perf_counter()
            where = failed_rows.FailedFilter()
            counts = failed_rows.failed_count(outcomes, statuses, where)
            page = failed_rows.failed_page(
                outcomes, statuses, where, offset=0, limit=50, counts=counts
            )
        timings.append(t1 - t0)
        first_page.append(time.perf_counter() - t1)
    return view, page, timings, first_page


def explain_first_page(summary: dict) -> None:
    """Print the query plans of the first page of failed numbers and their count (with the
    stored counts): each query the page runs, as the database plans it."""
    from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS
    from airflow_provider_voxsms.storage.sql import db_api_hook
    from airflow_provider_voxsms.ui import failed_rows
    from airflow_provider_voxsms.ui.tables import OwnedRows, dialect_of

    results = summary["results"]
    owner = {c: results[c] for c in CAMPAIGN_COLUMNS}
    hook = db_api_hook(CONN_ID)
    with closing(hook.get_conn()) as conn:
        mark, dialect = hook.placeholder, dialect_of(conn)
        seen: list[tuple[str, tuple]] = []
        outcomes = OwnedRows(_Recording(conn, seen), mark, dialect, results["table"], owner)
        report_key = dict(zip(TASK_COLUMNS, REPORT_KEY, strict=True))
        statuses = OwnedRows(
            _Recording(conn, seen), mark, dialect, "sms_delivery_status", report_key
        )
        where = failed_rows.FailedFilter()
        counts = failed_rows.failed_count(outcomes, statuses, where)
        failed_rows.failed_page(outcomes, statuses, where, offset=0, limit=50, counts=counts)
        explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
        for sql, params in seen:
            print(f"\n{sql}")
            with closing(conn.cursor()) as cur:
                cur.execute(explain + sql, params)
                for row in cur.fetchall():
                    print("    ", row[-1] if dialect == "sqlite" else row[0])


class _Recording:
    """A connection that records the statements its cursors run."""

    def __init__(self, conn, seen: list) -> None:
        self.conn, self.seen = conn, seen

    def cursor(self):
        cursor, seen = self.conn.cursor(), self.seen

        class Cursor:
            def __getattr__(self, name):
                return getattr(cursor, name)

            def execute(self, sql, params=()):
                seen.append((sql, tuple(params)))
                return cursor.execute(sql, params)

        return Cursor()

    def rollback(self) -> None:
        self.conn.rollback()


def summary_cost(summary: dict) -> tuple[float, float]:
    """Seconds to store the send's and the report's counts again (what each pays when it
    finishes; storing replaces what was stored)."""
    from airflow_provider_voxsms.storage import summary as stored
    from airflow_provider_voxsms.storage.key import TASK_COLUMNS
    from airflow_provider_voxsms.storage.sql import db_api_hook

    hook = db_api_hook(CONN_ID)
    results = summary["results"]
    key = {c: results[c] for c in stored.OWNER_COLUMNS}
    t0 = time.perf_counter()
    assert stored.store(hook, results["table"], key, stored.SEND_KINDS)
    t1 = time.perf_counter()
    report_key = dict(zip(TASK_COLUMNS, REPORT_KEY, strict=True))
    assert stored.store(hook, "sms_delivery_status", report_key, stored.REPORT_KINDS)
    return t1 - t0, time.perf_counter() - t1


def measure(args: argparse.Namespace, work: Path) -> int:
    """Fill the tables, then time the page both ways (see the module)."""
    from airflow_provider_voxsms.ui.campaign import OUTCOME_KEYS

    if args.through_storage:
        from bench.campaign_rows import fill_through_storage

        summary, report, sent_s, followed_s = fill_through_storage(CONN_ID, args.size, TI)
    else:
        summary, report, sent_s, followed_s = run_operators(work, args.size)
    found = {way: time_page(summary, report, way, args.runs) for way in (True, False)}
    view, page = found[True][0], found[True][1]
    same = found[True][:2] == found[False][:2]
    matches = view["outcomes"] == {k: summary[k] for k in OUTCOME_KEYS} and all(
        view["delivery"]["statuses"].get(s.upper(), 0) == report[s]
        for s in ("delivered", "failed", "expired", "rejected", "aborted", "unknown")
    )
    if args.explain:
        explain_first_page(summary)
    send_store_s, report_store_s = summary_cost(summary)
    database = "PostgreSQL" if args.postgres else "SQLite"
    how = "through the storage code" if args.through_storage else "through the operators"
    print(f"| {args.size:,} recipients, {database} ({how}) | median | min - max |")
    print("|---|---|---|")
    for way, label in ((True, "stored counts"), (False, "counting the rows")):
        _, _, timings, first = found[way]
        print(f"| campaign JSON, {label} ({len(timings)} runs) | {_ms(timings)} |")
        print(
            f"| first page of failed numbers ({len(page)} of "
            f"{sum(view['failed'].values()):,}) and their count, {label} | {_ms(first)} |"
        )
    print(
        f"\nsend {sent_s:.1f} s (accepted {summary['accepted']:,}, failed {summary['failed']:,}, "
        f"invalid {summary['invalid']:,}, duplicates {summary['duplicates']:,}); delivery report "
        f"{followed_s:.1f} s ({report['delivered']:,} delivered of {report['messages']:,}); "
        f"storing the counts: send {send_store_s:.2f} s, report {report_store_s:.2f} s; "
        f"answer equals both return values: {matches}; the same both ways: {same}"
    )
    return 0 if matches and same else 1


def _ms(seconds: list[float]) -> str:
    median = statistics.median(seconds) * 1000
    return f"{median:,.0f} ms | {min(seconds) * 1000:,.0f} - {max(seconds) * 1000:,.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
