"""Delivery-report benchmark: N accepted messages followed to their final status.

``python -m bench.delivery [--messages 1000000]`` (not yet a section of ``python -m bench``).
The emulator runs in its own process over HTTPS (``bench.emulator.EmulatorProcess``); the
messages are accepted through the hook (100 per request, 16 threads), with outcomes drawn per
message (5 % FAILED, 2 % EXPIRED, 1 % never final). Then, for both paths of the operator:

- worker: ``DeliveryTracker`` rounds driven by the blocking hook, 4 calls in flight
  (``run_round_concurrently``), rows kept;
- trigger: the same rounds through ``AsyncHistoryClient`` (httpx, 4 in flight), counts only;

it prints history calls and wall time per round, the size of the trigger's serialised state,
and the peak RSS of this process (the client side; the emulator's is reported apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CONCURRENCY = 4  # the operator's default max_concurrency


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def accept(n: int) -> list[int]:
    """Send ``n`` distinct numbers through the hook; returns the accepted message ids."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

    hook = VoximplantHook(pool_size=16)
    numbers = [f"44{7_000_000_000 + i}" for i in range(n)]
    batches = [numbers[i : i + 100] for i in range(0, n, 100)]
    with ThreadPoolExecutor(16) as pool:
        answers = pool.map(lambda b: hook.a2p_send_sms("VoxDemo", b, "Hello"), batches)
        return [row["message_id"] for answer in answers for row in answer.result]


def worker_rounds(ids: list[int], rounds: int) -> list[tuple[int, float, int]]:
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
    from airflow_provider_voxsms.sms import delivery

    hook = VoximplantHook(pool_size=CONCURRENCY)
    tracker = delivery.DeliveryTracker(ids)
    out = []
    for _ in range(rounds):
        calls, started = tracker.calls, time.perf_counter()
        delivery.run_round_concurrently(tracker, hook.a2p_get_sms_history, "VoxDemo", CONCURRENCY)
        out.append((tracker.calls - calls, time.perf_counter() - started, len(tracker.open)))
        if tracker.done:
            break
    return out


def trigger_rounds(ids: list[int], rounds: int) -> list[tuple[int, float, int]]:
    from airflow_provider_voxsms.sms import delivery
    from airflow_provider_voxsms.triggers.delivery import AsyncHistoryClient

    async def run():
        client = await AsyncHistoryClient.connect("voximplant_default")
        tracker = delivery.DeliveryTracker(ids, keep_rows=False)
        out = []
        async with client:
            for _ in range(rounds):
                calls, started = tracker.calls, time.perf_counter()
                await client.run_tracker_round(tracker, "VoxDemo", CONCURRENCY)
                out.append(
                    (tracker.calls - calls, time.perf_counter() - started, len(tracker.open))
                )
                if tracker.done:
                    break
        return out

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path at most")
    args = parser.parse_args(argv)

    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    quiet_logs()
    from airflow_provider_voxsms.sms import delivery
    from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger
    from bench.emulator import EmulatorProcess

    with EmulatorProcess() as emu:
        conn = json.loads(emu.connection_json())
        conn["extra"] = {"ca_bundle": str(emu.ca_path)}
        os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = json.dumps(conn)
        emu.set_faults(
            delivery_failed_rate=0.05, delivery_expired_rate=0.02, delivery_never_final_rate=0.01
        )
        started = time.perf_counter()
        ids = accept(args.messages)
        print(f"accepted {len(ids):,} messages in {time.perf_counter() - started:.1f} s")
        _, kwargs = A2PSmsDeliveryTrigger(
            ids=delivery.encode_ids(ids), deadline=time.time() + 3600
        ).serialize()
        print(f"trigger serialised state: {len(json.dumps(kwargs)):,} bytes")
        for name, rounds in (("worker", worker_rounds), ("trigger", trigger_rounds)):
            for i, (calls, seconds, still_open) in enumerate(rounds(ids, args.rounds), 1):
                print(
                    f"{name} round {i}: {calls:,} history calls, {seconds:.2f} s, "
                    f"{still_open:,} open after it"
                )
        print(f"peak RSS of this process: {_rss_mib():.0f} MiB; emulator {emu.rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
