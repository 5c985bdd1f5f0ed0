"""Delivery-report benchmark: N accepted messages followed to their final status.

``python -m bench.delivery [--messages 1000000]`` starts its own emulator; section 9 of
``python -m bench`` calls :func:`measure` with the emulator it already runs, once per size.
Either way the emulator runs in its own process over HTTPS (``bench.emulator.EmulatorProcess``);
the messages are accepted through the hook (100 per request, 16 threads), with outcomes drawn
per message (5 % FAILED, 2 % EXPIRED, 1 % never final), and written as a send with
``results_conn_id`` writes them: one ``accepted`` row each in ``voxsms_results_outcomes`` (a
SQLite file). Then each path of the operator runs in a fresh interpreter of its own
(``python -m bench.delivery --path worker|trigger``), so that its peak RSS is its own:

- worker: ``A2PSmsDeliveryReportOperator.execute()`` (no deferral) with ``messages`` the
  send's ``accepted_numbers`` location and ``report_conn_id`` set, as ``voxsms_sharded_campaign``
  runs it: the accepted rows read from the results table a block at a time, the follower under
  ``asyncio.run`` (4 calls in flight), every message's row written to ``sms_delivery_status``
  as it ends; its second round is its last (what is still pending is written as pending);
- trigger: the same follower, counts only, from the ``followed_message_ids`` text
  (``OpenIds.decode``, as ``A2PSmsDeliveryTrigger.run`` does with the XCom it reads);

it reports history calls and wall time per round, the size of the trigger's serialised state
and of the ``followed_message_ids`` XCom it reads, and per path the peak RSS of its process
(``VmHWM``) next to its RSS once imports are done (the emulator's RSS is reported apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.child import child_result

CONCURRENCY = 4  # the operator's default max_concurrency
FAULTS = {
    "delivery_failed_rate": 0.05,
    "delivery_expired_rate": 0.02,
    "delivery_never_final_rate": 0.01,
}
CONN_ID = "voxsms_bench_delivery"  # the SQLite file with the results and the statuses
_RESULT = "BENCH-DELIVERY "
MiB = 2**20


def _rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def accept(n: int) -> tuple[list[int], list[str]]:
    """Send ``n`` distinct numbers through the hook; returns the accepted message ids and the
    numbers they went to."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

    hook = VoximplantHook(pool_size=16)
    numbers = [f"44{7_000_000_000 + i}" for i in range(n)]
    batches = [numbers[i : i + 100] for i in range(0, n, 100)]
    ids, sent_to = [], []
    with ThreadPoolExecutor(16) as pool:
        for answer in pool.map(lambda b: hook.a2p_send_sms("VoxDemo", b, "Hello"), batches):
            for row in answer.result:
                ids.append(int(row["message_id"]))
                sent_to.append(str(row["destination_number"]))
    return ids, sent_to


def write_results(ids: list[int], numbers: list[str], chunk: int = 100_000) -> dict:
    """The accepted rows as a send with ``results_conn_id`` writes them; returns the send's
    ``accepted_numbers`` XCom (where they are)."""
    import pandas as pd

    from airflow_provider_voxsms.sms.model import OUTCOME_COLUMNS
    from airflow_provider_voxsms.storage.key import CampaignKey
    from airflow_provider_voxsms.storage.results import ResultsTable

    key = CampaignKey("bench", "send", -1, "bench-campaign", "bench-run")
    with ResultsTable(CONN_ID, "voxsms_results", key) as table:
        for start in range(0, len(ids), chunk):
            part = slice(start, start + chunk)
            frame = pd.DataFrame(
                {column: None for column in OUTCOME_COLUMNS}, index=range(len(ids[part]))
            )
            frame["destination_number"] = numbers[part]
            frame["input_number"] = numbers[part]
            frame["outcome"] = "accepted"
            frame["message_id"] = ids[part]
            table.write(frame)
        return table.location(["accepted"], len(ids))


def worker_rounds(accepted: dict, rounds: int) -> list[tuple[int, float, int]]:
    """The operator without deferral, reading the accepted rows from the results table and
    writing the statuses; its ``rounds``-th round is its last."""
    from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
    from bench.clients import FakeTaskInstance

    out = _timed_rounds(rounds)
    operator = A2PSmsDeliveryReportOperator(
        task_id="delivery",
        messages=accepted,
        src_number="VoxDemo",
        report_conn_id=CONN_ID,
        poll_interval=0.01,
        max_poll_interval=0.01,
        max_concurrency=CONCURRENCY,
        deferrable=False,
    )
    summary = operator.execute({"ti": FakeTaskInstance(task_id="delivery")})
    if summary["messages"] != accepted["rows"]:
        raise RuntimeError(f"followed {summary['messages']:,} of {accepted['rows']:,}")
    return out


def trigger_rounds(encoded: str, rounds: int) -> list[tuple[int, float, int]]:
    """The trigger: the same follower, counts only, from the XCom's text."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook
    from airflow_provider_voxsms.sms.follow import DeliveryFollower, FollowSettings, OpenIds

    out = _timed_rounds(rounds)

    async def run():
        ids = await asyncio.to_thread(OpenIds.decode, encoded)
        settings = FollowSettings(
            src_number="VoxDemo", poll_interval=0.01, max_poll_interval=0.01,
            max_concurrency=CONCURRENCY,
        )  # fmt: skip
        async with VoximplantAsyncHook(pool_size=CONCURRENCY) as hook:
            await DeliveryFollower(hook, ids, settings).run()

    asyncio.run(run())
    return out


def _timed_rounds(rounds: int) -> list[tuple[int, float, int]]:
    """Record each round's calls, seconds and messages not final after it; the ``rounds``-th
    round is made the last (what it finds pending ends as pending)."""
    from airflow_provider_voxsms.sms.follow import DeliveryFollower

    out: list[tuple[int, float, int]] = []
    poll_round = DeliveryFollower.poll_round

    async def timed(self, last: bool = False) -> int:
        calls, started = self.calls, time.perf_counter()
        finished = await poll_round(self, last=last or len(out) + 1 >= rounds)
        out.append(
            (self.calls - calls, time.perf_counter() - started, self.open.total - self.final)
        )
        return finished

    DeliveryFollower.poll_round = timed
    return out


def _path_main(path: str, work: Path, rounds: int) -> dict:
    """One path in this (fresh) interpreter: its rounds, and its memory."""
    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    import airflow_provider_voxsms.operators.delivery_report  # noqa: F401 - imports before the baseline

    quiet_logs()
    base = _rss_now()
    if path == "worker":
        result = worker_rounds(json.loads((work / "accepted.json").read_text()), rounds)
    else:
        result = trigger_rounds((work / "ids.txt").read_text(), rounds)
    return {"rounds": result, "rss_base": base, "max_rss": _peak_rss()}


def _peak_rss() -> int:
    """This process's peak RSS in bytes. Linux keeps ``ru_maxrss`` across exec, so a child of
    a large parent would report the parent's peak; ``VmHWM`` belongs to this image alone."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_path(path: str, work: Path, rounds: int, env: dict, timeout_s: float) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.delivery", "--path", path, "--work", str(work)]
        + ["--rounds", str(rounds)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    return child_result(done, _RESULT, f"bench.delivery --path {path}")


GAP = 10  # ids 1 to GAP apart: a campaign interleaved with the account's other traffic


def _gapped_ids_bytes(n: int) -> int:
    """The ``followed_message_ids`` XCom for ``n`` ids spaced 1 to ``GAP`` apart (seeded)."""
    import numpy as np

    from airflow_provider_voxsms.sms import delivery

    gaps = np.random.default_rng(12).integers(1, GAP + 1, size=n)
    return len(delivery.encode_ids(np.cumsum(gaps) + 10_000_000))


def _trigger_state_bytes() -> int:
    """The JSON of the kwargs a deferring report task gives its trigger (a mapped one's)."""
    from airflow_provider_voxsms.operators.delivery_report import FOLLOWED_IDS_KEY
    from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger

    ref = {
        "dag_id": "voxsms_campaign",
        "run_id": "scheduled__2026-12-01T09:00:00+00:00",
        "task_id": "delivery_report",
        "map_index": 15,
        "key": FOLLOWED_IDS_KEY,
    }
    trigger = A2PSmsDeliveryTrigger(
        ids_xcom=ref, src_number="VoxDemo", deadline=time.time() + 6 * 3600, started=time.time()
    )
    return len(json.dumps(trigger.serialize()[1]))


def measure(emu, n: int, rounds: int = 2, timeout_s: float = 900, say=None) -> dict:
    """Accept ``n`` messages on the running emulator ``emu``, write them to a results table,
    then follow them to final status through each path (a child process each). Leaves ``emu``
    reset.

    Returns ``accepted``, ``accept_s``, ``trigger_state_bytes`` (the JSON of the trigger's
    serialised kwargs), ``ids_xcom_bytes`` (the ``followed_message_ids`` XCom the trigger
    reads) and ``ids_xcom_bytes_gapped`` (the same for ids 1 to ``GAP`` apart),
    ``emulator_rss_mib`` and, per path (``worker``, ``trigger``),
    ``rounds`` as ``[calls, seconds, not final after]`` and ``rss_base``/``max_rss`` in bytes.
    """
    from airflow_provider_voxsms.sms import delivery

    say = say or (lambda message: print(message, flush=True))
    conn = json.loads(emu.connection_json())
    conn["extra"] = {"ca_bundle": str(emu.ca_path)}  # the async hook's httpx client trusts this CA
    saved = {k: os.environ.get(k) for k in ("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", _conn_env())}
    emu.reset()
    emu.set_faults(**FAULTS)
    try:
        with tempfile.TemporaryDirectory(prefix="voxsms-bench-delivery-") as tmp:
            work = Path(tmp)
            os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = json.dumps(conn)
            os.environ[_conn_env()] = f"sqlite://{work / 'voxsms.db'}"
            env = {**os.environ, **emu.client_env()}
            started = time.perf_counter()
            ids, numbers = accept(n)
            result: dict = {"accepted": len(ids), "accept_s": time.perf_counter() - started}
            say(f"accepted {len(ids):,} messages in {result['accept_s']:.1f} s")
            accepted = write_results(ids, numbers)
            del numbers
            (work / "accepted.json").write_text(json.dumps(accepted))
            encoded = delivery.encode_ids(ids)
            del ids
            (work / "ids.txt").write_text(encoded)
            result["trigger_state_bytes"] = _trigger_state_bytes()
            say(f"trigger serialised state: {result['trigger_state_bytes']:,} bytes")
            result["ids_xcom_bytes"] = len(encoded)
            say(f"followed_message_ids XCom: {result['ids_xcom_bytes']:,} bytes")
            result["ids_xcom_bytes_gapped"] = _gapped_ids_bytes(n)
            say(f"the same with ids 1-{GAP} apart: {result['ids_xcom_bytes_gapped']:,} bytes")
            for path in ("worker", "trigger"):
                result[path] = _run_path(path, work, rounds, env, timeout_s)
                for i, (calls, seconds, still_open) in enumerate(result[path]["rounds"], 1):
                    say(
                        f"{path} round {i}: {calls:,} history calls, {seconds:.2f} s, "
                        f"{still_open:,} not final after it"
                    )
                say(
                    f"{path} process: peak RSS {result[path]['max_rss'] / MiB:.0f} MiB "
                    f"({result[path]['rss_base'] / MiB:.0f} MiB after imports)"
                )
        result["emulator_rss_mib"] = emu.rss_mib()
        say(f"emulator RSS {result['emulator_rss_mib']:.0f} MiB")
    finally:
        emu.reset()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return result


def _conn_env() -> str:
    return f"AIRFLOW_CONN_{CONN_ID.upper()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path at most")
    parser.add_argument("--path", choices=["worker", "trigger"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.path:  # a child of measure()
        result = _path_main(args.path, args.work, args.rounds)
        print(_RESULT + json.dumps(result), flush=True)
        return 0

    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    quiet_logs()
    from bench.emulator import EmulatorProcess

    with EmulatorProcess() as emu:
        measure(emu, args.messages, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
