"""Delivery-report benchmark: N accepted messages followed to their final status.

``python -m bench.delivery [--messages 1000000]`` starts its own emulator; section 9 of
``python -m bench`` calls :func:`measure` with the emulator it already runs. Either way the
emulator runs in its own process over HTTPS (``bench.emulator.EmulatorProcess``); the messages
are accepted through the hook (100 per request, 16 threads), with outcomes drawn per message
(5 % FAILED, 2 % EXPIRED, 1 % never final). Then each path of the operator runs in a fresh
interpreter of its own (``python -m bench.delivery --path worker|trigger``), so that its peak
RSS is its own:

- worker: ``DeliveryTracker`` rounds driven by the blocking hook, 4 calls in flight
  (``run_round_concurrently``), rows kept, from the list of ids (what the operator holds);
- trigger: the same rounds through ``AsyncHistoryClient`` (httpx, 4 in flight), counts only,
  from the ``followed_message_ids`` text (``decode_ids``, as ``A2PSmsDeliveryTrigger.run`` does
  with the XCom it reads);

it reports history calls and wall time per round, the size of the trigger's serialised state
and of the ``followed_message_ids`` XCom it reads, and per path the peak RSS of its process (``VmHWM``) next to its RSS once imports are done
(the emulator's RSS is reported apart).
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
_RESULT = "BENCH-DELIVERY "
MiB = 2**20


def _rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def accept(n: int) -> list[int]:
    """Send ``n`` distinct numbers through the hook; returns the accepted message ids."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

    hook = VoximplantHook(pool_size=16)
    numbers = [f"44{7_000_000_000 + i}" for i in range(n)]
    batches = [numbers[i : i + 100] for i in range(0, n, 100)]
    with ThreadPoolExecutor(16) as pool:
        answers = pool.map(lambda b: hook.a2p_send_sms("VoxDemo", b, "Hello"), batches)
        return [row["message_id"] for answer in answers for row in answer.result]


def worker_rounds(encoded: str, rounds: int) -> list[tuple[int, float, int]]:
    """The operator without deferral: the follower on asyncio.run, rows kept."""
    from airflow_provider_voxsms.sms import delivery

    ids = delivery.decode_id_array(encoded)  # the operator holds its messages as a frame
    return asyncio.run(_rounds(ids, rounds, keep_rows=True))


def trigger_rounds(encoded: str, rounds: int) -> list[tuple[int, float, int]]:
    """The trigger: the same follower, counts only, from the XCom's text."""
    from airflow_provider_voxsms.sms.follow import OpenIds

    async def run():
        return await _rounds(await asyncio.to_thread(OpenIds.decode, encoded), rounds, False)

    return asyncio.run(run())


async def _rounds(ids, rounds: int, keep_rows: bool) -> list[tuple[int, float, int]]:
    from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook
    from airflow_provider_voxsms.sms.follow import DeliveryFollower, FollowSettings, OpenIds

    settings = FollowSettings(src_number="VoxDemo", max_concurrency=CONCURRENCY)
    out = []
    async with VoximplantAsyncHook(pool_size=CONCURRENCY) as hook:
        open_ids = ids if isinstance(ids, OpenIds) else OpenIds(ids)
        follower = DeliveryFollower(hook, open_ids, settings, keep_rows=keep_rows)
        for _ in range(rounds):
            calls, started = follower.calls, time.perf_counter()
            await follower.poll_round()
            out.append((follower.calls - calls, time.perf_counter() - started, len(open_ids)))
            if open_ids.done:
                break
    return out


def _path_main(path: str, ids_file: Path, rounds: int) -> dict:
    """One path in this (fresh) interpreter: its rounds, and its memory."""
    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    import airflow_provider_voxsms.hooks.voximplant
    import airflow_provider_voxsms.triggers.delivery  # noqa: F401 - imports before the baseline

    quiet_logs()
    encoded = ids_file.read_text()
    base = _rss_now()
    run = {"worker": worker_rounds, "trigger": trigger_rounds}[path]
    result = run(encoded, rounds)
    return {
        "rounds": result,
        "rss_base": base,
        "max_rss": _peak_rss(),
    }


def _peak_rss() -> int:
    """This process's peak RSS in bytes. Linux keeps ``ru_maxrss`` across exec, so a child of
    a large parent would report the parent's peak; ``VmHWM`` belongs to this image alone."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_path(path: str, ids_file: Path, rounds: int, env: dict, timeout_s: float) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.delivery", "--path", path, "--ids-file", str(ids_file)]
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


def measure(emu, n: int, rounds: int = 2, timeout_s: float = 600, say=None) -> dict:
    """Accept ``n`` messages on the running emulator ``emu``, then follow them to final status
    through each path (a child process each). Leaves ``emu`` reset.

    Returns ``accepted``, ``accept_s``, ``trigger_state_bytes`` (the JSON of the trigger's
    serialised kwargs), ``ids_xcom_bytes`` (the ``followed_message_ids`` XCom the trigger
    reads) and ``ids_xcom_bytes_gapped`` (the same for ids 1 to ``GAP`` apart),
    ``emulator_rss_mib`` and, per path (``worker``, ``trigger``),
    ``rounds`` as ``[calls, seconds, open after]`` and ``rss_base``/``max_rss`` in bytes.
    """
    from airflow_provider_voxsms.sms import delivery

    say = say or (lambda message: print(message, flush=True))
    conn = json.loads(emu.connection_json())
    conn["extra"] = {"ca_bundle": str(emu.ca_path)}  # the trigger's httpx client trusts this CA
    env = {
        **os.environ,
        **emu.client_env(),
        "AIRFLOW_CONN_VOXIMPLANT_DEFAULT": json.dumps(conn),
    }
    saved = os.environ.get("AIRFLOW_CONN_VOXIMPLANT_DEFAULT")
    os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = env["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"]
    emu.reset()
    emu.set_faults(**FAULTS)
    try:
        started = time.perf_counter()
        ids = accept(n)
        result: dict = {"accepted": len(ids), "accept_s": time.perf_counter() - started}
        say(f"accepted {len(ids):,} messages in {result['accept_s']:.1f} s")
        encoded = delivery.encode_ids(ids)
        del ids
        result["trigger_state_bytes"] = _trigger_state_bytes()
        say(f"trigger serialised state: {result['trigger_state_bytes']:,} bytes")
        result["ids_xcom_bytes"] = len(encoded)
        say(f"followed_message_ids XCom: {result['ids_xcom_bytes']:,} bytes")
        result["ids_xcom_bytes_gapped"] = _gapped_ids_bytes(n)
        say(f"the same with ids 1-{GAP} apart: {result['ids_xcom_bytes_gapped']:,} bytes")
        with tempfile.TemporaryDirectory(prefix="voxsms-bench-delivery-") as tmp:
            ids_file = Path(tmp) / "ids.txt"
            ids_file.write_text(encoded)
            for path in ("worker", "trigger"):
                result[path] = _run_path(path, ids_file, rounds, env, timeout_s)
                for i, (calls, seconds, still_open) in enumerate(result[path]["rounds"], 1):
                    say(
                        f"{path} round {i}: {calls:,} history calls, {seconds:.2f} s, "
                        f"{still_open:,} open after it"
                    )
                say(
                    f"{path} process: peak RSS {result[path]['max_rss'] / MiB:.0f} MiB "
                    f"({result[path]['rss_base'] / MiB:.0f} MiB after imports)"
                )
        result["emulator_rss_mib"] = emu.rss_mib()
        say(f"emulator RSS {result['emulator_rss_mib']:.0f} MiB")
    finally:
        emu.reset()
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = saved
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path at most")
    parser.add_argument("--path", choices=["worker", "trigger"], help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.path:  # a child of measure()
        result = _path_main(args.path, args.ids_file, args.rounds)
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
