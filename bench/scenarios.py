"""The measurements of `make bench`; each returns rows of the results table."""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench import clients, data, pg_server
from bench.child import measure
from bench.emulator import EmulatorProcess
from bench.stats import Row, Sample, fmt

MiB = 2**20


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; :data:`FULL` is `make bench`, :data:`SMOKE` the test suite's run."""

    latency_n: int = 20_000
    latency_ms: int = 50
    latency_runs: int = 5
    cpu_n: int = 200_000
    cpu_runs: int = 5
    prep_n: int = 1_000_000
    prep_runs: int = 3
    scale_ns: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    scale_runs: int = 3  # for N below 1M; the 1M point runs once
    auth_vendor_calls: int = 50
    auth_hook_calls: int = 100_000
    auth_runs: int = 5
    db_rows: int = 100_000
    db_runs: int = 3
    ledger_n: int = 100_000
    ledger_runs: int = 5
    retry_ns: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    retry_left: int = 1_000
    retry_runs: int = 3
    delivery_ns: tuple[int, ...] = (250_000, 1_000_000)  # peak RSS of the larger within 1.35 x
    delivery_rounds: int = 2  # round 1 over every message, round 2 over the never-final 1 %
    rules_n: int = 1_000_000
    rules_runs: int = 3
    stream_ns: tuple[int, ...] = (250_000, 1_000_000, 4_000_000)
    stream_chunk_rows: int = 100_000  # the operator's default recipients_chunk_rows
    stream_warmup: int = 2_000
    stream_retry_ns: tuple[int, ...] = (1_000_000,)  # a retry after the money ran out at 90 %
    max_concurrency: int = 16  # the operator's default
    settle_n: int = 12_000
    settle_chunks: int = 6
    settle_delay_s: float = 10.0


FULL = Config()
SMOKE = Config(
    latency_n=400,
    latency_ms=20,
    latency_runs=1,
    cpu_n=2_000,
    cpu_runs=1,
    prep_n=5_000,
    prep_runs=1,
    scale_ns=(100, 1_000),
    scale_runs=1,
    auth_vendor_calls=3,
    auth_hook_calls=1_000,
    auth_runs=1,
    db_rows=1_000,
    db_runs=1,
    ledger_n=1_000,
    ledger_runs=1,
    retry_ns=(1_000,),
    retry_left=100,
    retry_runs=1,
    delivery_ns=(1_000, 2_000),
    rules_n=2_000,
    rules_runs=1,
    stream_ns=(1_000, 2_000),
    stream_chunk_rows=500,
    stream_warmup=100,
    stream_retry_ns=(2_000,),
    settle_n=600,
    settle_delay_s=1.0,
)


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- 1. latency-bound campaign ----------------------------------------------------------------


def latency_bound(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """Vendor loop vs operator with ``latency_ms`` added to every request; pairwise speed-up."""
    n, latency = cfg.latency_n, cfg.latency_ms / 1000
    numbers, frame = data.unique_numbers(n), data.clean_frame(n)
    ideal = math.ceil(n / 100) * latency / cfg.max_concurrency
    vendor, operator, speedup, bare = Sample(), Sample(), Sample(unit="x"), Sample()
    credentials = emu.credentials_path.read_text()

    emu.reset()
    emu.set_faults(latency_ms=cfg.latency_ms)  # warm-up: imports, key parsing, first TLS set-up
    clients.vendor_loop(str(emu.credentials_path), emu.endpoint, numbers[:100])
    cold, _, _ = clients.run_operator(data.clean_frame(1_600, offset=n))

    def run_vendor() -> float:
        emu.reset()
        emu.set_faults(latency_ms=cfg.latency_ms)
        return vendor.add(clients.vendor_loop(str(emu.credentials_path), emu.endpoint, numbers))

    def run_operator() -> float:
        emu.reset()
        emu.set_faults(latency_ms=cfg.latency_ms)
        seconds, summary, _ = clients.run_operator(frame)
        _check_sent(summary, n)
        return operator.add(seconds)

    for run in range(cfg.latency_runs):
        v, o = _pair(run, run_vendor, run_operator)
        speedup.add(v / o)
        emu.reset()
        emu.set_faults(latency_ms=cfg.latency_ms)
        bare.add(clients.pooled_ceiling(emu.base_url, credentials, numbers, cfg.max_concurrency))
        _say(f"latency run {run + 1}: vendor {v:.2f} s, operator {o:.3f} s, {v / o:.1f}x")
    emu.reset()
    label = f"{n:,} recipients, +{cfg.latency_ms} ms per request"
    return [
        Row("1", f"vendor client loop, chunks of 100: {label}", vendor, note="sequential"),
        Row(
            "1",
            f"A2PSendSmsOperator.execute(), max_concurrency {cfg.max_concurrency}: {label}",
            operator,
            target=f"≤ {fmt(1.5 * ideal, 's')} (1.5 x ideal {fmt(ideal, 's')})",
            met=operator.median <= 1.5 * ideal,
            note=f"{operator.median / ideal:.2f} x ideal; first (cold) run in the process "
            f"{fmt(cold, 's')} for 1,600",
        ),
        Row(
            "1",
            f"reference: bare pooled client (section 2's ceiling client), same {n:,} and latency",
            bare,
            note=f"{bare.median / ideal:.2f} x ideal: the floor of this machine and emulator",
        ),
        Row(
            "1",
            "speed-up, vendor / operator (pair by pair)",
            speedup,
            target="≥ 10x",
            met=speedup.median >= 10,
        ),
    ]


# -- 2. CPU-bound throughput ------------------------------------------------------------------


def cpu_bound(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """Recipients/s of the operator vs a bare pooled client, with no added latency."""
    n = cfg.cpu_n
    numbers, frame = data.unique_numbers(n), data.clean_frame(n)
    credentials = emu.credentials_path.read_text()
    ceiling = Sample(unit="recipients/s")
    operator = Sample(unit="recipients/s")
    share = Sample(unit="%")
    emu.reset()
    clients.run_operator(data.clean_frame(1_600, offset=n))  # warm-up

    def run_ceiling() -> float:
        emu.reset()
        return ceiling.add(n / clients.pooled_ceiling(emu.base_url, credentials, numbers))

    def run_operator() -> float:
        emu.reset()
        seconds, summary, _ = clients.run_operator(frame)
        _check_sent(summary, n)
        return operator.add(n / seconds)

    for run in range(cfg.cpu_runs):
        c, o = _pair(run, run_ceiling, run_operator)
        share.add(100 * o / c)
        _say(f"throughput run {run + 1}: ceiling {c:,.0f}/s, operator {o:,.0f}/s")
    emu.reset()
    return [
        Row(
            "2",
            f"ceiling: bare pooled requests.Session, {cfg.max_concurrency} threads, "
            f"{n:,} recipients, no added latency",
            ceiling,
            note="pre-built bodies, one fixed token",
        ),
        Row(
            "2",
            f"A2PSendSmsOperator.execute(), {n:,} recipients",
            operator,
            note="whole execute(): prepare, plan, send, report",
        ),
        Row(
            "2", "operator / ceiling (pair by pair)", share, target="≥ 70 %", met=share.median >= 70
        ),
    ]


# -- 3. preparation ---------------------------------------------------------------------------


def preparation(cfg: Config) -> list[Row]:
    """dry_run=True on ``prep_n`` mixed rows, each run in a fresh process (peak RSS its own)."""
    n = cfg.prep_n
    seconds, peak, growth = Sample(), Sample(unit="MiB"), Sample(unit="MiB")
    for run in range(cfg.prep_runs):
        result = measure({"n": n, "runs": 1, "send": False})
        seconds.add(result["prepare_s"][0])
        peak.add(result["max_rss"] / MiB)
        growth.add((result["prepare_peak_rss"] - result["rss_base"]) / MiB)
        _say(
            f"preparation run {run + 1}: {result['prepare_s'][0]:.2f} s, "
            f"peak {result['max_rss'] / MiB:.0f} MiB"
        )
    per = seconds.median / n
    return [
        Row(
            "3",
            f"prepare {n:,} mixed rows from a DataFrame, dry_run=True",
            seconds,
            target="< 5 s",
            met=seconds.median < 5,
            note=f"{fmt(per, 's')} per recipient; {result['valid']:,} valid, "
            f"{result['batches']:,} requests planned",
        ),
        Row(
            "3",
            "peak RSS of that process (imports + input frame + preparation)",
            peak,
            target="< 1,024 MiB",
            met=peak.high < 1024,
        ),
        Row("3", "memory the preparation itself added (peak - RSS before)", growth),
    ]


# -- 4. scaling -------------------------------------------------------------------------------


def scaling(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """Prepare and send N mixed rows, each N in a fresh process; per-recipient cost."""
    rows = []
    for n in cfg.scale_ns:
        runs = cfg.scale_runs if n < 1_000_000 else 1
        emu.reset()
        result = measure({"n": n, "runs": runs, "send": True}, timeout_s=900)
        emulator_rss = emu.rss_mib()
        emu.reset()
        prep, send = Sample(result["prepare_s"]), Sample(result["send_s"])
        peak = result["max_rss"] / MiB
        rows += [
            Row(
                "4",
                f"N = {n:,}: prepare (dry_run=True)",
                prep,
                note=f"{fmt(prep.median / n, 's')} per recipient",
            ),
            Row(
                "4",
                f"N = {n:,}: send (whole execute())",
                send,
                note=f"{fmt(send.median / n, 's')} per recipient, "
                f"{n / send.median:,.0f} recipients/s; peak RSS {peak:,.0f} MiB "
                f"(emulator {emulator_rss:,.0f} MiB)",
            ),
        ]
        _say(
            f"scaling N={n:,}: prepare {prep.median:.3f} s, send {send.median:.2f} s, "
            f"peak {peak:.0f} MiB"
        )
    return rows


# -- 5. auth cost -----------------------------------------------------------------------------


def auth_cost(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """Per-request auth: the vendor signs from the PEM every call; the hook reuses its token."""
    from voximplant.apiclient import VoximplantAPI

    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

    vendor, warm, cold, ratio = Sample(), Sample(), Sample(), Sample(unit="x")
    api = VoximplantAPI(str(emu.credentials_path), endpoint=emu.endpoint)
    api.build_auth_header()
    for _ in range(cfg.auth_runs):
        start = time.perf_counter()
        for _ in range(cfg.auth_vendor_calls):
            api.build_auth_header()
        v = vendor.add((time.perf_counter() - start) / cfg.auth_vendor_calls)

        hook = VoximplantHook()
        start = time.perf_counter()
        hook.signer.token()  # connection, credentials, PEM parsed once, first token signed
        cold.add(time.perf_counter() - start)
        signer = hook.signer
        start = time.perf_counter()
        for _ in range(cfg.auth_hook_calls):
            _ = f"Bearer {signer.token()}"  # what _post does per request
        w = warm.add((time.perf_counter() - start) / cfg.auth_hook_calls)
        ratio.add(v / w)
    return [
        Row(
            "5",
            "vendor client: build_auth_header() per request",
            vendor,
            note="parses the PEM and signs a new RS256 JWT every call",
        ),
        Row(
            "5",
            "VoximplantHook: auth header per request (cached token)",
            warm,
            note="TokenSigner.token() under its lock",
        ),
        Row(
            "5",
            "VoximplantHook: first token of a hook (once per task)",
            cold,
            note="connection lookup, credentials, PEM parse, one signature",
        ),
        Row("5", "auth cost per request, vendor / hook", ratio),
    ]


# -- 6. logging failed numbers ----------------------------------------------------------------


def failed_frame(n: int):
    """``n`` rows shaped like the operator's ``failed_numbers`` XCom: half validation, half API."""
    import numpy as np
    import pandas as pd

    half = n // 2
    numbers = data.unique_numbers(n)
    return pd.DataFrame(
        {
            "destination_number": numbers,
            "error_code": pd.array([None] * half + [509] * (n - half), dtype="Int64"),
            "error_description": np.where(
                np.arange(n) < half, "contains letters", "A2P SMS disabled"
            ).astype(object),
            "stage": ["validation"] * half + ["api"] * (n - half),
        }
    )


def failed_numbers_logging(cfg: Config) -> list[Row]:
    """Rows/s of log_failed_numbers into SQLite and PostgreSQL (a throwaway server)."""
    return _on_each_database("6", lambda name, uri: [_log_rows(cfg, name, uri)])


def _on_each_database(section: str, measure_on) -> list[Row]:
    """``measure_on(name, uri)`` on a SQLite file, then on a throwaway PostgreSQL server."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxsms-bench-db-") as tmp:
        rows += measure_on("SQLite (file)", "sqlite://" + str(Path(tmp) / "voxsms.db"))
    pg = pg_server()
    bindir = pg.find_pg_bin()
    if bindir is None:
        note = "no PostgreSQL binaries (initdb, postgres, ...) on this machine"
        return [*rows, Row(section, "PostgreSQL", value="skipped", note=note)]
    with pg.running_postgres(bindir, durable=True) as uri:  # every commit flushed, as in production
        rows += measure_on("PostgreSQL (local server, fsync on)", uri)
    return rows


# -- 7. send ledger overhead ------------------------------------------------------------------


@contextmanager
def _timed_claims() -> Iterator[list[float]]:
    """Record how long each ``SendLedger.claim`` takes: the time a sender waits before sending."""
    from airflow_provider_voxsms.storage.ledger import SendLedger

    real, waits = SendLedger.claim, []

    def claim(self, batch):
        start = time.perf_counter()
        try:
            return real(self, batch)
        finally:
            waits.append(time.perf_counter() - start)

    SendLedger.claim = claim
    try:
        yield waits
    finally:
        SendLedger.claim = real


def ledger_overhead(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """The operator with and without ``ledger_conn_id``: what the ledger's claims and outcome
    writes cost, with no added latency (the worst case) and with ``latency_ms`` per request."""
    cases = [
        (cfg.ledger_n, 0, "no added latency"),
        (cfg.latency_n, cfg.latency_ms, f"+{cfg.latency_ms} ms per request"),
    ]

    def measure_on(name: str, uri: str) -> list[Row]:
        os.environ["AIRFLOW_CONN_VOXSMS_BENCH_LEDGER"] = uri
        emu.reset()
        clients.run_operator(
            data.clean_frame(1_600, offset=5_000_000), ledger_conn_id="voxsms_bench_ledger"
        )
        rows = []
        for n, latency_ms, label in cases:
            frame = data.clean_frame(n)
            plain, ledgered, share = Sample(), Sample(), Sample(unit="%")
            claim_wait = Sample()

            def run(sample: Sample, frame=frame, n=n, latency_ms=latency_ms, **kwargs) -> float:
                emu.reset()
                emu.set_faults(latency_ms=latency_ms)
                seconds, summary, _ = clients.run_operator(frame, **kwargs)
                _check_sent(summary, n)
                return sample.add(seconds)

            def run_ledgered(ledgered=ledgered, claim_wait=claim_wait) -> float:
                with _timed_claims() as waits:
                    seconds = run(ledgered, ledger_conn_id="voxsms_bench_ledger")
                claim_wait.add(statistics.mean(waits))
                return seconds

            for i in range(cfg.ledger_runs):
                without, with_ledger = _pair(i, lambda plain=plain: run(plain), run_ledgered)
                share.add(100 * (with_ledger / without - 1))
                _say(
                    f"ledger on {name}, {label}: without {without:.2f} s, with {with_ledger:.2f} s"
                )
            rows += [
                Row("7", f"operator, {n:,} recipients, {label}: without a ledger", plain),
                Row("7", f"the same with the send ledger on {name}", ledgered),
                Row(
                    "7",
                    "time the ledger adds (pair by pair)",
                    share,
                    note=f"{math.ceil(n / 100):,} requests: one claim row per batch, committed "
                    "before its request with the claims queued alongside; one outcome row per "
                    "batch, group-committed",
                ),
                Row(
                    "7",
                    "a sender's wait for its claim's commit, mean per request",
                    claim_wait,
                    note="the ledger's share of the critical path"
                    + (f", next to {latency_ms} ms of API latency" if latency_ms else ""),
                ),
            ]
        emu.reset()
        del os.environ["AIRFLOW_CONN_VOXSMS_BENCH_LEDGER"]
        return rows

    return _on_each_database("7", measure_on)


# -- 8. retry of a large campaign ----------------------------------------------------------


def retry_of_a_large_campaign(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """A campaign that ran out of money after N numbers, retried after a top-up: the retry
    resumes N settled numbers from the send ledger (SQLite) and sends the ``retry_left`` rest.
    Next to it, for the target, a first try that sends 100,000 numbers with the ledger."""
    from airflow_provider_voxsms.errors import CampaignStoppedError

    rows = []
    with tempfile.TemporaryDirectory(prefix="voxsms-bench-retry-") as tmp:
        os.environ["AIRFLOW_CONN_VOXSMS_BENCH_LEDGER"] = "sqlite://" + str(Path(tmp) / "l.db")
        reference_n = min(100_000, max(cfg.retry_ns))
        reference = Sample()
        for run in range(cfg.retry_runs):
            emu.reset()
            seconds, summary, _ = clients.run_operator(
                data.clean_frame(reference_n, offset=7_000_000 + run * reference_n),
                ledger_conn_id="voxsms_bench_ledger",
            )
            _check_sent(summary, reference_n)
            reference.add(seconds)
        rows.append(
            Row(
                "8",
                f"reference: a first try sending {reference_n:,} recipients with the ledger",
                reference,
                note="no added latency",
            )
        )
        for n in cfg.retry_ns:
            frame = data.clean_frame(n + cfg.retry_left)
            emu.reset()
            emu.set_faults(insufficient_money_after=n)
            ti = clients.FakeTaskInstance()
            with suppress(CampaignStoppedError):  # the first try stops on error 127, as intended
                clients.run_operator(frame, ti=ti, ledger_conn_id="voxsms_bench_ledger")
            resumed = Sample()
            for _ in range(cfg.retry_runs):
                resumed.add(_time_resume(frame, ti))
            emu.set_faults(insufficient_money_after=None)
            seconds, summary, _ = clients.run_operator(
                frame, ti=ti, ledger_conn_id="voxsms_bench_ledger"
            )
            if summary["earlier"] < n or summary["accepted"] != n + cfg.retry_left:
                raise RuntimeError(f"the retry did not resume {n:,} settled numbers: {summary}")
            _say(f"retry resuming {n:,} settled numbers: {seconds:.2f} s")
            rows.append(
                Row(
                    "8",
                    f"resume {summary['earlier']:,} settled numbers: read the ledger, split",
                    resumed,
                    target=f"< the {reference_n:,}-recipient first try" if n >= 1_000_000 else "",
                    met=resumed.median < reference.median if n >= 1_000_000 else None,
                    note="SendLedger.open() and sms.resume.resume(), what a retry adds",
                )
            )
            rows.append(
                Row(
                    "8",
                    f"the whole retry: {summary['earlier']:,} settled numbers, sending "
                    f"{n + cfg.retry_left - summary['earlier']:,}",
                    _single(seconds),
                    note="the whole retry: read the ledger, resume, send the rest, report",
                )
            )
        del os.environ["AIRFLOW_CONN_VOXSMS_BENCH_LEDGER"]
    emu.reset()
    return rows


# -- 9. delivery reports -----------------------------------------------------------------------


def delivery_reports(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """Each of ``delivery_ns`` accepted messages followed to final status
    (``bench.delivery.measure``): each path of the operator in a fresh process,
    ``delivery_rounds`` rounds each; then whether the peak RSS of the largest stays within
    ``DELIVERY_RSS_GROWTH`` of the smallest's (memory flat in the campaign's size)."""
    from bench.delivery import CONCURRENCY, FAULTS, GAP, measure

    rows: list[Row] = []
    peaks: dict[str, dict[int, float]] = {"worker": {}, "trigger": {}}
    for n in cfg.delivery_ns:
        result = measure(emu, n, cfg.delivery_rounds, timeout_s=900, say=_say)
        if result["accepted"] != n:
            raise RuntimeError(f"the emulator accepted {result['accepted']:,} of {n:,}")
        rows += _delivery_rows(n, result, CONCURRENCY, FAULTS, GAP)
        for path, by_size in peaks.items():
            by_size[n] = result[path]["max_rss"] / MiB
    small, large = min(cfg.delivery_ns), max(cfg.delivery_ns)
    for path, by_size in peaks.items():
        growth = by_size[large] / by_size[small]
        rows.append(
            Row(
                "9",
                f"peak RSS of the {path} path, {large:,} messages over {small:,}",
                value=f"{growth:.2f} x",
                target=f"≤ {DELIVERY_RSS_GROWTH} x",
                met=growth <= DELIVERY_RSS_GROWTH,
                note=f"{by_size[large]:,.0f} MiB / {by_size[small]:,.0f} MiB: what a report keeps "
                "per message (ids, numbers, a mask) is about 25 bytes",
            )
        )
    return rows


DELIVERY_RSS_GROWTH = 1.35


def _delivery_rows(n: int, result: dict, concurrency: int, faults: dict, gap: int) -> list[Row]:
    outcomes = ", ".join(
        f"{key.removeprefix('delivery_').removesuffix('_rate').replace('_', ' ')} {share:.0%}"
        for key, share in faults.items()
    )
    rows = [
        Row(
            "9",
            f"set-up: accept {n:,} messages through the hook (100 per request, 16 threads)",
            _single(result["accept_s"]),
            note=f"outcomes drawn per message: {outcomes}; final at once otherwise; "
            f"emulator RSS after {result['emulator_rss_mib']:,.0f} MiB; the accepted rows then "
            "written to voxsms_results_outcomes (SQLite), as a send with results_conn_id does",
        )
    ]
    paths = {
        "worker": f"worker path (the operator: accepted rows read from the results table, the "
        f"follower under asyncio.run, {concurrency} in flight, each row written to "
        "sms_delivery_status as it ends)",
        "trigger": f"trigger path (the same follower, {concurrency} in flight, counts only)",
    }
    first_calls = []
    for path, label in paths.items():
        still_open = n
        for i, (calls, seconds, after) in enumerate(result[path]["rounds"], 1):
            if i == 1:
                first_calls.append(calls)
            last = "; the last round: what it finds pending ends as pending" if i > 1 else ""
            rows.append(
                Row(
                    "9",
                    f"{label}, round {i}: {still_open:,} open",
                    _single(seconds),
                    note=f"{calls:,} history call{'s' if calls != 1 else ''}, "
                    f"{fmt(seconds / max(calls, 1), 's')} per call; {after:,} not final after "
                    f"it{last}",
                )
            )
            still_open = after
    allowed = math.ceil(n / 1000)
    rows.append(
        Row(
            "9",
            f"history calls in a round over all {n:,} open (worker, trigger)",
            value=" / ".join(f"{c:,}" for c in first_calls),
            target=f"≤ {allowed:,} (1,000 ids per call)",
            met=max(first_calls) <= allowed,
            note="only open messages are asked about; a round over the rest costs "
            "ceil(open / 1,000)",
        )
    )
    state = result["trigger_state_bytes"]
    rows.append(
        Row(
            "9",
            "trigger's serialised state (JSON of serialize()'s kwargs), any campaign size",
            value=f"{state:,} bytes",
            target="< 1 KiB, no ids",
            met=state < 1024,
            note="names the followed_message_ids XCom instead of carrying the ids",
        )
    )
    ids_bytes, gapped = result["ids_xcom_bytes"], result["ids_xcom_bytes_gapped"]
    rows.append(
        Row(
            "9",
            f"followed_message_ids XCom the trigger reads, {n:,} messages",
            value=f"{ids_bytes:,} bytes",
            note="zlib-compressed id deltas (encode_ids); the emulator's ids are consecutive, "
            "the best case",
        )
    )
    rows.append(
        Row(
            "9",
            f"the same XCom if the {n:,} ids were 1 to {gap} apart (random, seeded)",
            value=f"{gapped:,} bytes",
            note="a campaign interleaved with other traffic on the account; computed, not polled",
        )
    )
    for path in paths:
        peak, base = result[path]["max_rss"] / MiB, result[path]["rss_base"] / MiB
        rows.append(
            Row(
                "9",
                f"peak RSS of the {path} path's process, {n:,} messages",
                Sample(values=[peak], unit="MiB"),
                note=f"VmHWM of a fresh interpreter; {base:,.0f} MiB after imports "
                f"(+{peak - base:,.0f} MiB for the report)",
            )
        )
    _say(f"delivery: {n:,} messages, trigger state {state:,} bytes")
    return rows


# -- 10. campaign rules -----------------------------------------------------------------------


def campaign_rules(cfg: Config) -> list[Row]:
    """Templates, opt-outs and send windows on ``rules_n`` rows, in this process."""
    from datetime import UTC, datetime

    import numpy as np
    import pandas as pd

    from airflow_provider_voxsms.sms.recipients import prepare_recipients
    from airflow_provider_voxsms.sms.suppression import opt_outs
    from airflow_provider_voxsms.sms.window import SendWindow, assess

    n = cfg.rules_n
    rng = np.random.default_rng(10)
    uk = pd.Series([f"447{v:09d}" for v in rng.choice(10**9, n, replace=False)], dtype=object)
    frame = pd.DataFrame(
        {
            "phone": uk,
            "first_name": rng.choice(["Ann", "Bob", "Chen", "Dee", "Émile"], n),
            "code": rng.integers(1000, 10**6, n),
        }
    )
    plain, template, suppress, window_uk, window_de = (Sample() for _ in range(5))
    germany = pd.Series([f"4915{v:09d}" for v in rng.choice(10**9, n, replace=False)])
    window = SendWindow.parse(("09:00", "20:00"))
    now = datetime(2026, 12, 1, 14, tzinfo=UTC)
    for _ in range(cfg.rules_runs):
        started = time.perf_counter()
        prepare_recipients(frame, text="Hi, your code is ready.")
        plain.add(time.perf_counter() - started)
        started = time.perf_counter()
        prepared = prepare_recipients(frame, text="Hi {first_name}, your code is {code}.")
        template.add(time.perf_counter() - started)
        started = time.perf_counter()
        optouts = opt_outs([uk.sample(frac=0.1, random_state=1).map(lambda v: "+" + v)])
        optouts.matches(prepared.valid["phone"])
        suppress.add(time.perf_counter() - started)
        started = time.perf_counter()
        assess(uk, window, now)
        window_uk.add(time.perf_counter() - started)
        started = time.perf_counter()
        assess(germany, window, now)
        window_de.add(time.perf_counter() - started)
    _say(f"templates: {template.median:.2f} s for {n:,} rows (plain text {plain.median:.2f} s)")
    return [
        Row(
            "10",
            f"prepare {n:,} rows with two placeholders (rendered per row, all distinct)",
            template,
            target="a few seconds (< 5 s)",
            met=template.median < 5,
            note=f"the same rows with one plain text: {fmt(plain.median, 's')}",
        ),
        Row(
            "10",
            f"opt-outs: normalise {n // 10:,} numbers and match them against {n:,}",
            suppress,
        ),
        Row(
            "10",
            f"send window: judge {n:,} UK numbers (zones by prefix and number type)",
            window_uk,
            note="time_zones_for_number's answer, a country at a time (recipients.number_types)",
        ),
        Row(
            "10",
            f"send window: judge {n:,} German numbers (one zone for the whole country)",
            window_de,
            note="the same code path as the UK's",
        ),
    ]


# -- 11. stream from SQL ---------------------------------------------------------------------


def stream_from_sql(
    cfg: Config, emu: EmulatorProcess, sizes: tuple[int, ...] | None = None, details=None
) -> list[Row]:
    """Campaigns of ``stream_ns`` recipients read from PostgreSQL in chunks, with the ledger and
    the results table there too, one task process per size (``bench.streaming``). ``sizes``
    (else ``VOXSMS_BENCH_STREAM_SIZES``) and ``VOXSMS_BENCH_STREAM_CHUNK_ROWS`` override."""
    from bench import streaming

    return streaming.stream_from_sql(
        sizes or streaming.sizes_from_env(cfg.stream_ns),
        streaming.chunk_rows_from_env(cfg.stream_chunk_rows),
        emu,
        warmup=cfg.stream_warmup,
        say=_say,
        details=details,
        retry_ns=cfg.stream_retry_ns,
    )


def _time_resume(frame, ti) -> float:
    """Seconds to read the ledger of ``ti`` and split ``frame`` by it, as a retry does."""
    from airflow_provider_voxsms.sms.model import bulk_objects
    from airflow_provider_voxsms.sms.recipients import prepare_recipients
    from airflow_provider_voxsms.sms.resume import resume
    from airflow_provider_voxsms.storage.key import CampaignKey
    from airflow_provider_voxsms.storage.ledger import SendLedger

    valid = prepare_recipients(frame, text=data.TEXT, default_region=data.REGION).valid
    key = CampaignKey.from_context({"ti": ti})  # as the operator keys it, without a DAG run
    start = time.perf_counter()
    with SendLedger("voxsms_bench_ledger", key) as ledger, bulk_objects():
        resume(valid, ledger.earlier(valid), settle_delay_s=0)
    return time.perf_counter() - start


def _single(seconds: float) -> Sample:
    return Sample(values=[seconds])


def _log_rows(cfg: Config, name: str, uri: str) -> Row:
    from airflow_provider_voxsms.storage import log_failed_numbers

    conn_id = "voxsms_bench_db"
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    frame = failed_frame(cfg.db_rows)
    key = {"conn_id": conn_id, "dag_id": "bench", "task_id": "send"}
    log_failed_numbers(frame.head(10), run_id="warm-up", **key)  # table, index, imports
    rate = Sample(unit="rows/s")
    for run in range(cfg.db_runs):
        start = time.perf_counter()
        written = log_failed_numbers(frame, run_id=f"run-{run}-{uuid.uuid4().hex[:8]}", **key)
        rate.add(written / (time.perf_counter() - start))
    _say(f"failed numbers into {name}: {rate.median:,.0f} rows/s")
    del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]
    return Row(
        "6",
        f"log_failed_numbers, {cfg.db_rows:,} rows: {name}",
        rate,
        note="one transaction: delete the task's rows, insert in batches of 10,000",
    )


def _pair(run: int, first, second) -> tuple[float, float]:
    """Both measurements of one run, in alternating order so that drift favours neither."""
    if run % 2:
        b = second()
        return first(), b
    a = first()
    return a, second()


def _check_sent(summary: dict, n: int) -> None:
    if summary["accepted"] != n:
        raise RuntimeError(f"the operator sent {summary['accepted']} of {n}: {summary}")


# -- 12. settle once per pass ------------------------------------------------------------------


def settle_once(cfg: Config, emu: EmulatorProcess) -> list[Row]:
    """A campaign streamed from a CSV in ``settle_chunks`` chunks with its outcomes in a
    results table (SQLite, no ledger), on a clean server and then with one request in seven
    processed and answered HTTP 500: the faulty run may take at most 2.5 settle delays longer,
    because the pass settles once after its last chunk instead of once per chunk."""
    import sqlite3

    n, delay = cfg.settle_n, cfg.settle_delay_s
    seconds, extra = {}, Sample(unit="delays")
    with tempfile.TemporaryDirectory(prefix="voxsms-bench-settle-") as tmp:
        path = Path(tmp) / "recipients.csv"
        data.clean_frame(n).to_csv(path, index=False)
        for name, faults in (("clean", {}), ("faulty", {"process_then_500_rate": 1 / 7})):
            results = Path(tmp) / f"{name}.db"
            os.environ["AIRFLOW_CONN_VOXSMS_BENCH_RESULTS"] = f"sqlite://{results}"
            emu.reset()
            emu.set_faults(seed=7, **faults)
            seconds[name], summary, _ = clients.run_operator(
                None,
                recipients_path=str(path),
                recipients_chunk_rows=n // cfg.settle_chunks,
                results_conn_id="voxsms_bench_results",
                settle_delay_s=delay,
            )
            _check_sent(summary, n)
            stats = emu.stats()
            with closing(sqlite3.connect(results)) as db:
                outcomes = dict(
                    db.execute(
                        "SELECT outcome, COUNT(message_id) FROM voxsms_results_outcomes "
                        "GROUP BY outcome"
                    ).fetchall()
                )
            if stats["duplicates"] or outcomes != {"accepted": n}:
                raise RuntimeError(f"{name}: duplicates or rows off: {stats}, {outcomes}")
            _say(f"settle once, {name}: {seconds[name]:.1f} s, {summary['reconciled']} reconciled")
        del os.environ["AIRFLOW_CONN_VOXSMS_BENCH_RESULTS"]
    emu.reset()
    extra.add((seconds["faulty"] - seconds["clean"]) / delay)
    return [
        Row(
            "12",
            f"{n:,} recipients in {cfg.settle_chunks} chunks, 1 request in 7 processed then "
            f"HTTP 500: time over the clean run, in settle delays of {delay:g} s",
            extra,
            target="<= 2.5",
            met=extra.median <= 2.5,
            note=f"clean {seconds['clean']:.1f} s, faulty {seconds['faulty']:.1f} s; every "
            "number once, every results row accepted with a message id",
        )
    ]
