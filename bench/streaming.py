"""Section 11, stream from SQL: one campaign of N recipients read from PostgreSQL, for each N.

``python -m bench --only 11`` (part of ``make bench``) or ``python -m bench.streaming [--sizes
250000,1000000,4000000] [--chunk-rows 100000] [--trace]`` (its own emulator and PostgreSQL).
Sizes can also come from ``VOXSMS_BENCH_STREAM_SIZES`` (``250000,1000000``) and the chunk size
from ``VOXSMS_BENCH_STREAM_CHUNK_ROWS``, for quick runs of ``make bench``;
``VOXSMS_BENCH_STREAM_RAW=path.json`` keeps every size's raw measurements (per chunk).

A throwaway PostgreSQL server (``tests/pg_server.py``, every commit flushed as in production)
gets one table of ``max(N)`` recipients, seeded with COPY: UK mobiles in international format,
1 % of the rows a copy of an earlier row's number in another format (``+44 7400 123456``),
mostly many chunks earlier. Any first N rows are a campaign of their own, so each size reads
``WHERE id < N ORDER BY id``. Each size runs in a fresh interpreter
(``python -m bench.streaming --child``): one untimed warm-up of a few rows (imports, TLS,
connections), then ONE ``A2PSendSmsOperator(...).execute(context)`` with ``recipients_sql``,
``recipients_conn_id``, ``ledger_conn_id`` and ``results_conn_id`` all on that server, sending
to the emulator (its own process, HTTPS). The ledger and results tables are dropped before each
size, so every size starts from the same empty tables.

Per size: wall time of ``execute()`` and the task process's CPU, both split over the
operator's steps per chunk (read, prepare + dedupe, send, outcome rows, results insert), the
garbage collector's pauses, the mean wall time of a request to the emulator and of a ledger
claim per chunk, the task process's peak RSS (``VmHWM``: ``ru_maxrss`` survives exec on Linux
and can report the parent's peak) and its RSS after every chunk, what outlives a chunk (seen
keys, the ledger's claim map), the rows in the results table (one per input row) and the
accepted count, the CPU the emulator and PostgreSQL used meanwhile (is either the
bottleneck?), PostgreSQL's checkpoints, WAL and autovacuums, and the machine's load average
(the bench shares 2 vCPUs with other work). ``--trace`` adds
tracemalloc in the child: what is allocated after the first chunk and still alive when the
ledger closes (after the last chunk), by the provider's innermost line on the allocation's
stack. That names where objects were made, not who keeps them (the inventory of what outlives
a chunk, always reported, names the holders), and it makes the task ~70 x slower: use it on
10,000-20,000 rows.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import REPO, pg_server
from bench.child import child_result

SIZES_ENV = "VOXSMS_BENCH_STREAM_SIZES"
CHUNK_ROWS_ENV = "VOXSMS_BENCH_STREAM_CHUNK_ROWS"
RAW_ENV = "VOXSMS_BENCH_STREAM_RAW"  # a path: every size's raw measurements as JSON
CONN_ID = "voxsms_bench_stream"
TABLE = "bench_recipients"
DUPLICATE_SHARE = 0.01
RESULTS_TABLE = "voxsms_results_outcomes"  # the operator's default results_table_prefix
LEDGER_TABLES = ("voxsms_send_ledger_leases", "voxsms_send_ledger_claims")
LEDGER_TABLES += ("voxsms_send_ledger_outcomes", "voxsms_send_ledger_contacts")
LEDGER_TABLES += ("voxsms_send_ledger_cap_lock",)  # probed last: dropped with the rest
RETRY_RSS_TARGET_RATIO = 1.35  # a retry of 1M (both tries) over a clean first try of 250k
RSS_TARGET_RATIO = 1.25
RSS_TARGET_MIB = 1024
FLAT_TARGET = 1.20
_RESULT = "BENCH-STREAM "
_SEED_ROWS = 500_000  # rows per COPY buffer
MiB = 2**20


# -- the recipients -----------------------------------------------------------------------------


def recipients(n: int, seed: int = 11):
    """The first ``n`` rows of the table: ``(phones, duplicate)``; ``phones`` are strings and
    ``duplicate`` marks the rows whose number an earlier row already had. Any prefix of a
    larger ``n`` is the same rows (the copies only point backwards)."""
    import numpy as np
    import pandas as pd

    from bench import data

    digits = data.unique_digits(n)
    rng = np.random.default_rng(seed)
    duplicate = rng.random(n) < DUPLICATE_SHARE
    duplicate[:10] = False
    copies, originals = np.flatnonzero(duplicate), np.flatnonzero(~duplicate)
    before = np.searchsorted(originals, copies)  # originals earlier than each copy (>= 10)
    source = originals[(rng.random(len(copies)) * before).astype(np.int64)]
    phones = ("+" + pd.Series(digits).astype(str)).to_numpy(dtype=object)
    phones[copies] = [f"+{d[:2]} {d[2:6]} {d[6:]}" for d in digits[source].astype(str)]
    return phones, duplicate


def seed_table(uri: str, n: int) -> dict:
    """Create :data:`TABLE` with ``n`` rows (COPY, then the primary key); returns the seconds
    it took and how many rows are copies (for every prefix size, through ``duplicates_below``)."""
    import numpy as np
    import pandas as pd
    import psycopg2

    started = time.perf_counter()
    phones, duplicate = recipients(n)
    with contextlib.closing(psycopg2.connect(uri)) as conn:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"CREATE TABLE {TABLE} (id BIGINT NOT NULL, phone TEXT NOT NULL)")
            for start in range(0, n, _SEED_ROWS):
                part = slice(start, min(n, start + _SEED_ROWS))
                buffer = io.StringIO()
                frame = pd.DataFrame(
                    {"id": np.arange(part.start, part.stop), "phone": phones[part]}
                )
                frame.to_csv(buffer, index=False, header=False)
                buffer.seek(0)
                cur.copy_expert(f"COPY {TABLE} (id, phone) FROM STDIN WITH (FORMAT csv)", buffer)
            cur.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {TABLE}")
    return {"seconds": time.perf_counter() - started, "copies": np.flatnonzero(duplicate)}


def query(n: int) -> str:
    return f"SELECT id AS customer_id, phone FROM {TABLE} WHERE id < {int(n)} ORDER BY id"


def _reset_tables(uri: str) -> None:
    """Drop the results and ledger tables: every size starts from empty ones."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
        for table in (RESULTS_TABLE, *LEDGER_TABLES):
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()


def _results_of(uri: str, run_id: str) -> dict[str, int]:
    """Rows per outcome in the results table for one run."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT outcome, count(*) FROM {RESULTS_TABLE} WHERE run_id = %s GROUP BY outcome",
            (run_id,),
        )
        return {outcome: int(count) for outcome, count in cur.fetchall()}


def _server_stats(uri: str) -> dict[str, float]:
    """PostgreSQL's cumulative counters: checkpoints, WAL bytes, autovacuum and autoanalyze
    runs on the ledger and results tables (which are dropped, so counted afresh, per size)."""
    import psycopg2

    stats: dict[str, float] = {}
    with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
        with contextlib.suppress(psycopg2.Error):
            cur.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            stats["checkpoints"] = cur.fetchone()[0]
        conn.rollback()
        with contextlib.suppress(psycopg2.Error):
            cur.execute("SELECT num_timed + num_requested FROM pg_stat_checkpointer")  # 17+
            stats["checkpoints"] = cur.fetchone()[0]
        conn.rollback()
        with contextlib.suppress(psycopg2.Error):
            cur.execute("SELECT wal_bytes FROM pg_stat_wal")
            stats["wal_mib"] = float(cur.fetchone()[0]) / MiB
        conn.rollback()
        cur.execute(
            "SELECT coalesce(sum(autovacuum_count), 0), coalesce(sum(autoanalyze_count), 0) "
            "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            ([RESULTS_TABLE, *LEDGER_TABLES],),
        )
        stats["autovacuums"], stats["autoanalyzes"] = map(int, cur.fetchone())
    return stats


class _ServerCpu:
    """CPU seconds used by the PostgreSQL server (postmaster, its live children, and the
    backends it reaped), read through psutil from ``postmaster.pid``."""

    def __init__(self, uri: str) -> None:
        import psutil
        import psycopg2

        self._process = None
        with contextlib.closing(psycopg2.connect(uri)) as conn, conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            data_dir = Path(cur.fetchone()[0])
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int((data_dir / "postmaster.pid").read_text().split()[0])
            self._process = psutil.Process(pid)

    def seconds(self) -> float | None:
        import psutil

        if self._process is None:
            return None
        try:
            t = self._process.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for child in self._process.children():
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
            return total
        except psutil.Error:
            return None


# -- the task process ---------------------------------------------------------------------------


def _vm_hwm() -> int:
    """This process's peak RSS in bytes (``VmHWM``: this image's own, unlike ``ru_maxrss``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Probes:
    """Times the operator's steps per chunk and samples RSS after each chunk, by wrapping the
    methods the streamed pass calls once per chunk (a few calls per 100,000 rows: free)."""

    STEPS = ("read", "prepare", "send", "outcome_rows", "results_write")

    def __init__(self) -> None:
        import psutil

        self._rss = psutil.Process().memory_info
        self.clear()
        self.trace_first = None
        self.trace_last = None
        self.tracing = False
        self.state = None
        self.held: dict[str, int] = {}

    def clear(self) -> None:
        self.steps: dict[str, list[float]] = {step: [] for step in self.STEPS}
        self.steps_cpu: dict[str, list[float]] = {step: [] for step in self.STEPS}
        self.chunk_rows: list[int] = []
        self.chunk_s: list[float] = []
        self.chunk_cpu_s: list[float] = []  # the whole process's CPU (sending threads too)
        self.rss_after_chunk: list[int] = []
        self.load_after_chunk: list[float] = []  # the machine's 1-minute load average
        # per chunk: mean wall time of a request to the emulator, of a ledger claim's commit
        self.request_ms: list[float] = []
        self.claim_ms: list[float] = []
        self._calls: dict[str, list[float]] = {"request": [], "claim": []}

    def install(self) -> None:
        from airflow_provider_voxsms.operators import a2p_sms
        from airflow_provider_voxsms.sms import campaign, report, runner
        from airflow_provider_voxsms.storage import ledger as ledger_module
        from airflow_provider_voxsms.storage import results

        probes = self
        chunks = a2p_sms.recipient_chunks

        def recipient_chunks(**kwargs) -> Iterator:
            source = iter(chunks(**kwargs))
            while True:
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    chunk = next(source)
                except StopIteration:
                    return
                probes.steps["read"].append(time.perf_counter() - started)
                probes.steps_cpu["read"].append(time.process_time() - cpu)
                yield chunk

        a2p_sms.recipient_chunks = recipient_chunks
        self._time(runner.CampaignRunner, "_prepare", "prepare")
        self._time(campaign.PassSender, "send", "send")
        self._time(report, "sent_rows", "outcome_rows")
        self._time(results.ResultsTable, "write", "results_write")
        from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

        self._count(VoximplantHook, "a2p_send_sms", "request")
        self._count(ledger_module.SendLedger, "claim", "claim")

        pass_chunk = runner.CampaignRunner._chunk

        def timed_pass(campaign_runner, chunk, state, *args, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            pass_chunk(campaign_runner, chunk, state, *args, **kwargs)
            probes.chunk_s.append(time.perf_counter() - started)
            probes.chunk_cpu_s.append(time.process_time() - cpu)
            probes.chunk_rows.append(len(chunk))
            probes.rss_after_chunk.append(probes._rss().rss)
            probes.load_after_chunk.append(os.getloadavg()[0])
            for name, means in (("request", probes.request_ms), ("claim", probes.claim_ms)):
                calls, probes._calls[name] = probes._calls[name], []
                means.append(1e3 * sum(calls) / len(calls) if calls else 0.0)
            probes.state = state
            if probes.tracing and len(probes.chunk_rows) == 1:
                probes.trace_first = _snapshot()

        runner.CampaignRunner._chunk = timed_pass

        close = ledger_module.SendLedger.close

        def traced_close(ledger):  # after the last chunk, while the pass's state is alive
            probes.held = _held_across_chunks(probes.state, ledger)
            if probes.tracing:
                probes.trace_last = _snapshot()
            return close(ledger)

        ledger_module.SendLedger.close = traced_close

    def _count(self, owner, name: str, kind: str) -> None:
        """Keep each call's wall time (called from the sending threads)."""
        real, probes = getattr(owner, name), self

        def counted(*args, **kwargs):
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:  # list.append is atomic: no lock needed between the sending threads
                probes._calls[kind].append(time.perf_counter() - started)

        setattr(owner, name, counted)

    def _time(self, owner, name: str, step: str) -> None:
        real, probes = getattr(owner, name), self

        def timed(*args, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                probes.steps[step].append(time.perf_counter() - started)
                probes.steps_cpu[step].append(time.process_time() - cpu)

        setattr(owner, name, timed)


class _GcPauses:
    """Seconds the cyclic garbage collector ran, per generation (``gc.callbacks``): its full
    collections walk every tracked container alive, so they grow with what a run keeps."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _held_across_chunks(state, ledger) -> dict[str, int]:
    """Bytes that what outlives a chunk holds once the last chunk is done: the pass's seen
    keys, texts and accepted message ids, and the ledger's map of this try's claims (keyed by each batch's text and
    numbers: the number strings stay alive through it)."""
    held: dict[str, int] = {}
    if state is not None:
        if state.seen is not None:
            held["seen keys (SeenKeys.nbytes)"] = state.seen.nbytes
        held["distinct texts (SeenKeys.nbytes)"] = state.texts.nbytes
        if state.sender is not None:
            held["accepted message ids (SeenKeys.nbytes)"] = state.sender._accepted_ids.nbytes
    claims = getattr(ledger, "_claims", None)
    if claims is not None:
        size = sys.getsizeof(claims)
        for key, claim_id in claims.items():  # key: (text, numbers); one text for all
            size += sys.getsizeof(key) + sys.getsizeof(key[1]) + sys.getsizeof(claim_id)
            size += sum(sys.getsizeof(number) for number in key[1])
        held[f"SendLedger._claims ({len(claims):,} batches)"] = size
    return held


def _snapshot():
    import tracemalloc

    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


def _child_main(spec: dict) -> dict:
    """One size in this fresh interpreter: a warm-up, then the measured ``execute()``."""
    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    import airflow_provider_voxsms.operators.a2p_sms  # noqa: F401 - imports are not the step's
    from bench import clients
    from bench.child import _reset_emulator

    quiet_logs()
    probes = _Probes()
    probes.install()
    kwargs = {
        "recipients_conn_id": CONN_ID,
        "ledger_conn_id": CONN_ID,
        "results_conn_id": CONN_ID,
        "recipients_chunk_rows": int(spec["chunk_rows"]),
    }
    if warmup := int(spec.get("warmup", 0)):
        clients.run_operator(None, recipients_sql=query(warmup), **kwargs)
        _reset_emulator()
        probes.clear()
    gc.collect()
    rss_base = probes._rss().rss
    if spec.get("trace"):
        import tracemalloc

        tracemalloc.start(int(spec.get("trace_frames", 30)))
        probes.tracing = True
    gc_pauses = _GcPauses()
    cpu = time.process_time()
    ti = clients.FakeTaskInstance(run_id=spec.get("run_id") or f"bench-{uuid.uuid4().hex}")
    with gc_pauses:
        try:
            seconds, summary, ti = clients.run_operator(
                None, ti=ti, recipients_sql=query(spec["n"]), **kwargs
            )
        except Exception as stop:  # a first try that runs out of money, as the retry test wants
            if not spec.get("expect_stop"):
                raise
            seconds, summary = 0.0, {"stopped_by": str(stop)}
    cpu = time.process_time() - cpu
    result: dict[str, Any] = {
        "n": int(spec["n"]),
        "seconds": seconds,
        "cpu_s": cpu,
        "gc_s": gc_pauses.seconds,
        "gc_runs": gc_pauses.runs,
        "summary": {k: v for k, v in summary.items() if isinstance(v, int | float | str)},
        "run_id": ti.run_id,
        "rss_base": rss_base,
        "rss_end": probes._rss().rss,
        "peak_rss": _vm_hwm(),
        "steps": probes.steps,
        "chunk_rows": probes.chunk_rows,
        "chunk_s": probes.chunk_s,
        "steps_cpu": probes.steps_cpu,
        "chunk_cpu_s": probes.chunk_cpu_s,
        "rss_after_chunk": probes.rss_after_chunk,
        "load_after_chunk": probes.load_after_chunk,
        "request_ms": probes.request_ms,
        "claim_ms": probes.claim_ms,
        "held": probes.held,
    }
    if spec.get("trace"):
        import tracemalloc

        result["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        result["trace"] = _trace_report(probes.trace_first, probes.trace_last)
    return result


def _trace_report(first, last, top: int = 12) -> list[str]:
    """What was allocated after the first chunk and is still alive after the last one, summed
    by the innermost line of the provider on the allocation's stack (with the biggest site)."""
    if first is None or last is None:
        return ["(no snapshots: fewer than one chunk, or no ledger)"]
    by_line: dict[str, list] = {}
    for stat in last.compare_to(first, "traceback"):
        frames = [f for f in stat.traceback if "airflow_provider_voxsms" in f.filename]
        site = stat.traceback[-1]  # tracemalloc lists frames oldest first
        ours = frames[-1] if frames else site
        key = f"{_short(ours.filename)}:{ours.lineno}"
        entry = by_line.setdefault(key, [0, 0, None, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
        if stat.size_diff > entry[3]:
            entry[2], entry[3] = f"{_short(site.filename)}:{site.lineno}", stat.size_diff
    ranked = sorted(by_line.items(), key=lambda item: -item[1][0])[:top]
    return [
        f"+{size / MiB:,.1f} MiB in {count:+,} blocks: {line} (biggest site {site})"
        for line, (size, count, site, _) in ranked
        if size > 0
    ]


def _short(filename: str) -> str:
    for marker in ("airflow_provider_voxsms/", "site-packages/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename


def run_child(spec: dict, timeout_s: float) -> dict:
    """:func:`_child_main` in a fresh interpreter (the environment names the emulator, the
    Airflow home and the PostgreSQL connection)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.streaming", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )
    return child_result(done, _RESULT, "bench.streaming --child")


# -- the section --------------------------------------------------------------------------------


def sizes_from_env(default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(SIZES_ENV, "").strip()
    return tuple(int(s.replace("_", "")) for s in raw.split(",") if s.strip()) or default


def chunk_rows_from_env(default: int) -> int:
    raw = os.environ.get(CHUNK_ROWS_ENV, "").strip()
    return int(raw.replace("_", "")) if raw else default


def stream_from_sql(
    ns: tuple[int, ...],
    chunk_rows: int,
    emu,
    warmup: int = 2_000,
    trace: bool = False,
    say=None,
    details: list[str] | None = None,
    raw: list[dict] | None = None,
    retry_ns: tuple[int, ...] = (),
) -> list:
    """Seed PostgreSQL with ``max(ns)`` recipients, run one streamed campaign per size in a
    fresh process, then for each of ``retry_ns`` a first try that runs out of money at 90 %
    and its retry; rows of the results table (and, in ``details``, a per-size table)."""
    from bench.stats import Row

    say = say or (lambda message: print(f"  {message}", file=sys.stderr, flush=True))
    pg = pg_server()
    bindir = pg.find_pg_bin()
    if bindir is None:
        note = "no PostgreSQL binaries (initdb, postgres, ...) on this machine"
        return [Row("11", "stream from SQL", value="skipped", note=note)]
    ns = tuple(sorted(set(ns)))
    results, retries = [], []
    with pg.running_postgres(bindir, durable=True) as uri:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = uri
        try:
            seeded = seed_table(uri, max(ns + tuple(retry_ns)))
            say(f"seeded {max(ns):,} recipients with COPY in {seeded['seconds']:.1f} s")
            server_cpu = _ServerCpu(uri)
            for n in ns:
                _reset_tables(uri)
                emu.reset()
                emu_cpu, pg_cpu = _cpu_of(emu.pid), server_cpu.seconds()
                load = os.getloadavg()[0]
                server_before = _server_stats(uri)
                spec = {"n": n, "chunk_rows": chunk_rows, "warmup": min(warmup, n), "trace": trace}
                result = run_child(spec, timeout_s=max(600.0, n * 600e-6))
                result["emulator_cpu_s"] = _cpu_of(emu.pid) - emu_cpu
                result["load"] = [load, os.getloadavg()[0]]
                after = server_cpu.seconds()
                result["postgres_cpu_s"] = None if pg_cpu is None else after - pg_cpu
                result["emulator_rss_mib"] = emu.rss_mib()
                result["emulator_accepted"] = emu.stats()["accepted"]
                result["copies"] = int((seeded["copies"] < n).sum())
                result["outcomes"] = _results_of(uri, result["run_id"])
                server_after = _server_stats(uri)
                result["postgres"] = {
                    key: value
                    - (server_before.get(key, 0) if key in ("checkpoints", "wal_mib") else 0)
                    for key, value in server_after.items()
                }
                results.append(result)
                say(_progress(result))
                for line in result.get("trace", []):
                    say(f"  tracemalloc: {line}")
                emu.reset()
            for n in retry_ns:
                copies = int((seeded["copies"] < n).sum())
                retries.append(_retry(uri, emu, n, chunk_rows, warmup, say, copies))
        finally:
            del os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"]
    rows = _rows(results, chunk_rows, retries)
    for row in rows:
        if row.met is not None:
            say(f"target {row.target}: {row.what}: {'PASS' if row.met else 'FAIL'}")
    if details is not None:
        details.append(detail_table(results, chunk_rows))
    if raw is not None:
        raw.extend(results)
    if path := os.environ.get(RAW_ENV):
        Path(path).write_text(json.dumps(results, indent=1))
    return rows


def _retry(uri: str, emu, n: int, chunk_rows: int, warmup: int, say, copies: int) -> dict:
    """A campaign of ``n`` whose first try runs out of money (error 127) at 90 %, topped up
    and retried as the same task instance, each try in a fresh process: both peaks, and
    whether every number went out once with one accepted row per input row."""
    _reset_tables(uri)
    emu.reset()
    stop_at = n * 9 // 10
    spec = {"n": n, "chunk_rows": chunk_rows, "warmup": 0}  # a warm-up resets the faults
    spec["run_id"] = f"bench-retry-{uuid.uuid4().hex}"
    emu.set_faults(insufficient_money_after=stop_at)
    first = run_child({**spec, "expect_stop": True}, timeout_s=max(600.0, n * 600e-6))
    emu.set_faults(insufficient_money_after=None)
    retry = run_child(spec, timeout_s=max(600.0, n * 600e-6))
    stats, outcomes = emu.stats(), _results_of(uri, spec["run_id"])
    result = {"n": n, "stop_at": stop_at, "first": first, "retry": retry}
    result.update(duplicates=stats["duplicates"], outcomes=outcomes)
    retry["outcomes"], retry["copies"] = outcomes, copies
    result["correct"] = stats["duplicates"] == 0 and _correct(retry)
    say(
        f"retry of {n:,}: first try {first['peak_rss'] / MiB:,.0f} MiB, retry "
        f"{retry['peak_rss'] / MiB:,.0f} MiB in {retry['seconds']:.1f} s, correct: "
        f"{result['correct']}"
    )
    emu.reset()
    return result


def _share(cpu_s: float | None, seconds: float) -> str:
    return "-" if cpu_s is None else f"{cpu_s / seconds:.0%}"


def _cpu_of(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _expected(result: dict) -> tuple[int, int]:
    """(results rows, accepted) a correct run has: every input row, every distinct number."""
    return result["n"], result["n"] - result["copies"]


def _correct(result: dict) -> bool:
    rows, accepted = _expected(result)
    return (
        sum(result["outcomes"].values()) == rows
        and result["summary"].get("accepted") == accepted
        and result["outcomes"].get("accepted") == accepted
    )


def _per(result: dict) -> float:
    return result["seconds"] / result["n"]


def _progress(result: dict) -> str:
    n = result["n"]
    return (
        f"stream N={n:,}: {result['seconds']:.1f} s, {_per(result) * 1e6:.1f} µs/recipient, "
        f"peak RSS {result['peak_rss'] / MiB:,.0f} MiB "
        f"({result['rss_base'] / MiB:,.0f} before execute), results rows "
        f"{sum(result['outcomes'].values()):,}, accepted {result['summary'].get('accepted'):,}; "
        f"{_split(result)}; {_servers(result)}; {_chunk_drift(result)}; held: {_held(result)}"
    )


def _split(result: dict) -> str:
    """µs per recipient in each step of the chunked pass."""
    n = result["n"]
    cpu = result.get("steps_cpu", {})
    parts = [
        f"{step.replace('_', ' ')} {sum(result['steps'][step]) / n * 1e6:.1f}"
        + (f" ({sum(cpu[step]) / n * 1e6:.1f})" if step in cpu else "")
        for step in _Probes.STEPS
    ]
    other = result["seconds"] - sum(sum(v) for v in result["steps"].values())
    return (
        "µs/recipient, wall (task CPU): "
        + ", ".join(parts)
        + f", rest {other / n * 1e6:.1f}; whole execute() {result['seconds'] / n * 1e6:.1f} "
        f"({result['cpu_s'] / n * 1e6:.1f}); {_gc(result)}"
    )


def _gc(result: dict) -> str:
    """The garbage collector's pauses, per recipient, and its full collections."""
    if "gc_s" not in result:
        return ""
    n, (young, middle, full) = result["n"], result["gc_s"]
    return (
        f"GC pauses {(young + middle + full) / n * 1e6:.1f} µs/recipient, of which "
        f"{result['gc_runs'][2]:,} full collections {full:.2f} s"
    )


def _servers(result: dict) -> str:
    seconds = result["seconds"]
    emulator = result["emulator_cpu_s"] / seconds
    text = (
        f"task CPU {result['cpu_s'] / seconds:.0%} of a core, emulator {emulator:.0%}, "
        f"{result['summary'].get('batches', 0) / seconds:,.0f} requests/s"
    )
    if result["postgres_cpu_s"] is not None:
        text += f", PostgreSQL {result['postgres_cpu_s'] / seconds:.0%}"
    if pg := result.get("postgres"):
        text += (
            f" ({pg.get('checkpoints', 0):.0f} checkpoints, {pg.get('wal_mib', 0):,.0f} MiB of WAL, "
            f"{pg['autovacuums']} autovacuums, {pg['autoanalyzes']} autoanalyzes)"
        )
    if load := result.get("load"):
        text += f"; machine load (1 min) {load[0]:.1f} before, {load[1]:.1f} after"
    return text


def _chunk_drift(result: dict) -> str:
    """RSS after the first full chunk against the last, and time per row of the first full
    chunks against the last ones (up to 3 each: single chunks are noisy on a shared machine)."""
    rows, secs, rss = result["chunk_rows"], result["chunk_s"], result["rss_after_chunk"]
    cpu = result.get("chunk_cpu_s") or secs
    full = [i for i, r in enumerate(rows) if r == max(rows)]
    if len(full) < 2:
        return ""
    a, b = full[0], full[-1]
    between = sum(rows[a + 1 : b + 1])
    growth = (rss[b] - rss[a]) / between * 1e6 / MiB
    k = min(3, len(full) // 2)
    first, last = full[:k], full[-k:]

    def per_row(values, chunks) -> float:
        return sum(values[i] for i in chunks) / sum(rows[i] for i in chunks) * 1e6

    def span(chunks) -> str:
        return f"{chunks[0] + 1}-{chunks[-1] + 1}" if len(chunks) > 1 else str(chunks[0] + 1)

    def calls(chunks) -> str:
        request, claim = result.get("request_ms"), result.get("claim_ms")
        if not request:
            return ""
        mean = lambda values: sum(values[i] for i in chunks) / len(chunks)  # noqa: E731
        return f"; a request {mean(request):.1f} ms, a claim {mean(claim):.1f} ms"

    return (
        f"RSS after chunk {a + 1} {rss[a] / MiB:,.0f} MiB, after chunk {b + 1} "
        f"{rss[b] / MiB:,.0f} MiB ({growth:+,.0f} MiB per 1M rows); chunks {span(first)} "
        f"{per_row(secs, first):.1f} µs/row ({per_row(cpu, first):.1f} CPU{calls(first)}), "
        f"chunks {span(last)} {per_row(secs, last):.1f} µs/row ({per_row(cpu, last):.1f} CPU"
        f"{calls(last)})"
    )


def _held(result: dict) -> str:
    held = result.get("held") or {}
    return "; ".join(f"{what} {size / MiB:,.1f} MiB" for what, size in held.items())


def _rows(results: list[dict], chunk_rows: int, retries: list[dict] | None = None) -> list:
    from bench.stats import Row, Sample

    rows = []
    for r in results:
        n = r["n"]
        got, accepted = sum(r["outcomes"].values()), r["summary"].get("accepted")
        rows.append(
            Row(
                "11",
                f"N = {n:,} from PostgreSQL (chunks of {chunk_rows:,}, ledger and results "
                "on PostgreSQL): whole execute()",
                Sample(values=[r["seconds"]]),
                target="results rows = input rows; accepted = distinct numbers",
                met=_correct(r),
                note=f"{_per(r) * 1e6:.1f} µs per recipient; results rows {got:,}, accepted "
                f"{accepted:,} ({r['copies']:,} copies); {_split(r)}; {_servers(r)}",
            )
        )
        rows.append(
            Row(
                "11",
                f"N = {n:,}: peak RSS of the task process",
                Sample(values=[r["peak_rss"] / MiB], unit="MiB"),
                note=f"VmHWM of a fresh interpreter; {r['rss_base'] / MiB:,.0f} MiB before "
                f"execute() (imports, warm-up); {_chunk_drift(r)}; held after the last chunk: "
                f"{_held(r)}; emulator {r['emulator_rss_mib']:,.0f} MiB",
            )
        )
    small, large = results[0], results[-1]
    for retry in retries or ():  # also when only one size ran (--stream-sizes 250000)
        peak = max(retry["first"]["peak_rss"], retry["retry"]["peak_rss"])
        rows.append(
            Row(
                "11",
                f"retry of {retry['n']:,} after the money ran out at {retry['stop_at']:,}: "
                f"peak RSS of both tries / a clean first try of {small['n']:,}",
                value=f"{peak / small['peak_rss']:.2f}x",
                target=f"≤ {RETRY_RSS_TARGET_RATIO:.2f}x; every number once, one accepted row "
                "per input row",
                met=peak / small["peak_rss"] <= RETRY_RSS_TARGET_RATIO and retry["correct"],
                note=f"first try {retry['first']['peak_rss'] / MiB:,.0f} MiB, retry "
                f"{retry['retry']['peak_rss'] / MiB:,.0f} MiB ({retry['retry']['seconds']:.1f} s,"
                f" earlier {retry['retry']['summary'].get('earlier', 0):,}); emulator "
                f"duplicates {retry['duplicates']}; results {retry['outcomes']}",
            )
        )
    if len(results) < 2:
        return rows
    ratio = large["peak_rss"] / small["peak_rss"]
    large_mib = large["peak_rss"] / MiB
    pers = [_per(r) for r in results]
    flat = max(pers) / min(pers)
    rows += [
        Row(
            "11",
            f"peak RSS at {large['n']:,} / at {small['n']:,}",
            value=f"{ratio:.2f}x",
            target=f"≤ {RSS_TARGET_RATIO:.2f}x",
            met=ratio <= RSS_TARGET_RATIO,
            note=f"{large_mib:,.0f} MiB / {small['peak_rss'] / MiB:,.0f} MiB",
        ),
        Row(
            "11",
            f"peak RSS at {large['n']:,}",
            Sample(values=[large_mib], unit="MiB"),
            target=f"< {RSS_TARGET_MIB:,} MiB",
            met=large_mib < RSS_TARGET_MIB,
        ),
        Row(
            "11",
            "time per recipient, slowest size / fastest",
            value=f"{flat:.2f}x",
            target=f"≤ {FLAT_TARGET:.2f}x (flat within 20 %)",
            met=flat <= FLAT_TARGET,
            note=", ".join(f"{r['n']:,}: {_per(r) * 1e6:.1f} µs" for r in results),
        ),
    ]
    return rows


def detail_table(results: list[dict], chunk_rows: int) -> str:
    """The per-size table of results.md's section 11."""
    head = (
        "| rows | s | µs/recipient | peak RSS MiB | RSS before execute() MiB | results rows | "
        "accepted | emulator CPU | PostgreSQL CPU |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        pg = r["postgres_cpu_s"]
        lines.append(
            f"| {r['n']:,} | {r['seconds']:.1f} | {_per(r) * 1e6:.1f} | "
            f"{r['peak_rss'] / MiB:,.0f} | {r['rss_base'] / MiB:,.0f} | "
            f"{sum(r['outcomes'].values()):,} | {r['summary'].get('accepted', 0):,} | "
            f"{r['emulator_cpu_s'] / r['seconds']:.0%} | "
            f"{_share(pg, r['seconds'])} |"
        )
    split = "\n".join(
        f"- {r['n']:,}: {_split(r)}; {_chunk_drift(r)}; held after the last chunk: {_held(r)}"
        for r in results
    )
    return (
        f"### 11. Stream from SQL: per size\n\n"
        f"One `A2PSendSmsOperator.execute()` per size in a fresh interpreter: `recipients_sql` on "
        f"PostgreSQL (server-side cursor, `recipients_chunk_rows={chunk_rows:,}`), "
        "`ledger_conn_id` and `results_conn_id` on the same server (fsync on), HTTPS to the "
        f"emulator. {DUPLICATE_SHARE:.0%} of the rows repeat an earlier row's number in another "
        "format. CPU columns: share of one core over the run's wall time.\n\n"
        + "\n".join(lines)
        + "\n\nWhere the time goes, per recipient, and the drift from the first full chunk to "
        "the last:\n\n" + split + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__)
    parser.add_argument("--sizes", help="comma-separated N (default 250000,1000000,4000000)")
    parser.add_argument("--chunk-rows", type=int, help="recipients_chunk_rows (default 100000)")
    parser.add_argument("--warmup", type=int, default=2_000, help="rows of the untimed warm-up")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="tracemalloc in the task process (~70 x slower: 10,000-20,000 rows)",
    )
    parser.add_argument("--raw", type=Path, help="write every size's raw measurements (JSON)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(_RESULT + json.dumps(_child_main(json.loads(args.child))), flush=True)
        return 0

    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    from bench import scenarios
    from bench.emulator import EmulatorProcess
    from bench.stats import markdown_table

    sizes = (
        tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    ) or sizes_from_env(scenarios.FULL.stream_ns)
    chunk_rows = args.chunk_rows or chunk_rows_from_env(scenarios.FULL.stream_chunk_rows)
    details: list[str] = []
    with EmulatorProcess() as emu:
        os.environ.update(emu.client_env())
        quiet_logs()
        raw: list[dict] = []
        rows = stream_from_sql(
            sizes, chunk_rows, emu, warmup=args.warmup, trace=args.trace, details=details, raw=raw
        )
    if args.raw:
        args.raw.write_text(json.dumps(raw, indent=1))
    print(markdown_table(rows))
    print("\n" + "\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
