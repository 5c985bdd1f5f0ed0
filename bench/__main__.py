"""`python -m bench` (what `make bench` runs): measure, print the table, write bench/results.md."""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before anything else is imported
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from bench import BENCH_DIR  # noqa: E402
from bench.env import isolate_airflow, machine_info, quiet_logs  # noqa: E402

SECTIONS = {
    "1": "latency-bound campaign",
    "2": "CPU-bound throughput",
    "3": "preparation",
    "4": "scaling",
    "5": "auth cost",
    "6": "logging failed numbers",
    "7": "send ledger overhead",
    "8": "retry of a large campaign",
    "9": "delivery reports",
    "10": "campaign rules (templates, opt-outs, send windows)",
    "11": "stream from SQL (250k, 1M, 4M recipients from PostgreSQL, results in a table; a retry of 1M)",
    "12": "settle once per pass (a streamed campaign with ambiguous answers)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one run each: checks the harness works"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated sections to run: "
        + ", ".join(f"{k} {v}" for k, v in SECTIONS.items()),
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the results (default: bench/results.md for a full run; none with "
        "--smoke or --only, whose partial table would replace the full one)",
    )
    parser.add_argument(
        "--stream-sizes",
        help="section 11's campaign sizes, comma-separated (default 250000,1000000,4000000; "
        "also VOXSMS_BENCH_STREAM_SIZES; VOXSMS_BENCH_STREAM_CHUNK_ROWS sets the chunk size)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    isolate_airflow()
    from bench import scenarios
    from bench.data import MIX_DESCRIPTION
    from bench.emulator import EmulatorProcess
    from bench.stats import markdown_table

    cfg = scenarios.SMOKE if args.smoke else scenarios.FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {sorted(SECTIONS)}")
    out = results_path(args)

    stream_sizes = (
        tuple(int(s.replace("_", "")) for s in args.stream_sizes.split(",") if s.strip())
        if args.stream_sizes
        else None
    )
    rows, details = [], []
    with EmulatorProcess() as emu:
        os.environ.update(emu.client_env())
        import airflow_provider_voxsms.operators.a2p_sms  # noqa: F401 - Airflow's logging set-up

        quiet_logs()
        steps = {
            "1": lambda: scenarios.latency_bound(cfg, emu),
            "2": lambda: scenarios.cpu_bound(cfg, emu),
            "3": lambda: scenarios.preparation(cfg),
            "4": lambda: scenarios.scaling(cfg, emu),
            "5": lambda: scenarios.auth_cost(cfg, emu),
            "6": lambda: scenarios.failed_numbers_logging(cfg),
            "7": lambda: scenarios.ledger_overhead(cfg, emu),
            "8": lambda: scenarios.retry_of_a_large_campaign(cfg, emu),
            "9": lambda: scenarios.delivery_reports(cfg, emu),
            "10": lambda: scenarios.campaign_rules(cfg),
            "11": lambda: scenarios.stream_from_sql(cfg, emu, stream_sizes, details),
            "12": lambda: scenarios.settle_once(cfg, emu),
        }
        for key, step in steps.items():
            if key in only:
                print(f"[{key}] {SECTIONS[key]}...", file=sys.stderr, flush=True)
                rows += step()

    total = time.perf_counter() - _STARTED
    table = markdown_table(rows)
    print(table)
    for detail in details:
        print("\n" + detail)
    print(f"\nTotal: {total:.0f} s", flush=True)
    if out is not None:
        out.write_text(render(table, machine_info(), cfg, MIX_DESCRIPTION, total, args, details))
        print(f"Written to {out}")
    elif not args.smoke:
        print("Not written: pass --out to keep this partial run (bench/results.md is a full run's)")
    return 0


def results_path(args: argparse.Namespace) -> Path | None:
    """Where the run's results go: ``--out``, else bench/results.md for a full run only; a
    smoke run or a partial one (``--only``) writes nothing, so it cannot replace the full table."""
    if args.out:
        return args.out
    full = {s.strip() for s in args.only.split(",") if s.strip()} == set(SECTIONS)
    return BENCH_DIR / "results.md" if full and not args.smoke else None


def render(
    table: str, info: dict, cfg, mix: str, total: float, args, details: list[str] = ()
) -> str:
    machine = (
        f"{info['cpus']} CPUs ({info['cpu']}), {info['platform']}; Python {info['python']}, "
        f"Airflow {info['airflow']}, pandas {info['pandas']}, pyarrow {info['pyarrow']}, "
        f"requests {info['requests']}, voximplant-apiclient {info['voximplant-apiclient']}"
    )
    command = "python -m bench" + (" --smoke" if args.smoke else "")
    if args.only != ",".join(SECTIONS):
        command += f" --only {args.only}"
    extra = "".join("\n" + detail for detail in details)
    from bench.streaming import chunk_rows_from_env

    chunk_rows = chunk_rows_from_env(cfg.stream_chunk_rows)
    return f"""# Benchmark results

{info["date"]} · `{command}` (`make bench`) · total {total:.0f} s

Machine: {machine}.

{table}

How these were measured (details in bench/NOTES.md):

- The emulator runs in its own process (`voxsms-emulator --tls --port 0`), over HTTPS for every
  client; faults and resets go through its `/_emulator` endpoints.
- "Operator" is `A2PSendSmsOperator(...).execute(context)` called directly, with a context whose
  task instance only records `xcom_push`: the operator's whole code path (prepare, plan, send,
  report, outputs) minus Airflow's scheduler and task runner. Default settings
  (max_concurrency {cfg.max_concurrency}, batch_size 100), `default_region="GB"`.
- "Vendor client loop" is `voximplant-apiclient`'s `VoximplantAPI.a2p_send_sms` over chunks of
  100 in a plain loop, as in a PythonOperator; both trust the emulator's CA through
  `REQUESTS_CA_BUNDLE`.
- Each figure is the median of the runs shown, with min and max; ratios are taken pair by pair
  within one run, then their median. One untimed warm-up precedes sections 1 and 2.
- Sections 3 and 4 run in a fresh interpreter per measurement so peak RSS (ru_maxrss, and RSS
  sampled every 5 ms during the step) belongs to that step. Input for 3 and 4: {mix}.
- Section 9 (`bench/delivery.py`), for each of {", ".join(f"{n:,}" for n in cfg.delivery_ns)}
  messages: accepts them on the emulator and writes them to a results table (SQLite), then runs
  each delivery path (worker: the operator reading that table and writing
  `sms_delivery_status`; trigger: the follower from the ids' XCom) in a fresh interpreter of
  its own: peak RSS is that process's VmHWM (ru_maxrss survives exec on Linux); the rounds run
  back to back (poll interval 0.01 s), the second being the last.
- Section 11 (`bench/streaming.py`) seeds a throwaway PostgreSQL server (fsync on) with COPY,
  then runs one `execute()` per size in a fresh interpreter (after an untimed warm-up of
  {cfg.stream_warmup:,} rows): `recipients_sql` (server-side cursor, chunks of
  {chunk_rows:,}), `ledger_conn_id` and `results_conn_id` on that server; peak RSS is
  the task process's VmHWM. The ledger and results tables are dropped before each size.
{extra}"""


if __name__ == "__main__":
    sys.exit(main())
