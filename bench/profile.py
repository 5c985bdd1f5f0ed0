"""Profiles behind bench/NOTES.md: ``python -m bench.profile [prepare|execute|request ...]``.

pyinstrument samples one thread, so the CPU-bound send is profiled two ways: ``execute`` is
the whole ``execute()`` of ``--n`` recipients seen from the task's thread (preparation, planning,
waiting on the pool, building the outputs), and ``request`` runs the per-request client path
(``hook.a2p_send_sms`` + ``outcome_of``) sequentially in the profiled thread, next to the bare
pooled client's per-request work, so the two can be compared frame by frame. ``latency`` is
section 1's operator run (20,000 recipients, +50 ms). ``prepare`` is
``dry_run=True`` on the mixed input of section 3. Text reports go to bench/profiles/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import BENCH_DIR
from bench.env import isolate_airflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", nargs="*", default=["prepare", "execute", "latency", "request"])
    parser.add_argument("--n", type=int, default=None, help="recipients (default per profile)")
    args = parser.parse_args(argv)
    isolate_airflow()
    from pyinstrument import Profiler

    from bench import clients, data
    from bench.emulator import EmulatorProcess

    out_dir = BENCH_DIR / "profiles"
    out_dir.mkdir(exist_ok=True)

    def profiled(name: str, fn, interval: float = 0.001, full: bool = False) -> None:
        profiler = Profiler(interval=interval)
        cpu = time.process_time()
        profiler.start()
        fn()
        profiler.stop()
        cpu = time.process_time() - cpu
        text = profiler.output_text(unicode=True, show_all=full)
        (out_dir / f"{name}.txt").write_text(text)
        print(f"== {name}: process CPU {cpu:.2f} s (all threads)\n{text}")

    with EmulatorProcess() as emu:
        os.environ.update(emu.client_env())
        import airflow_provider_voxsms.operators.a2p_sms  # noqa: F401

        clients.run_operator(data.clean_frame(1_600, offset=5_000_000))  # warm-up
        if "prepare" in args.what:
            frame = data.mixed_frame(args.n or 1_000_000)
            profiled("prepare", lambda: clients.run_operator(frame, dry_run=True))
        if "execute" in args.what:
            frame = data.clean_frame(args.n or 200_000)
            emu.reset()
            profiled("execute", lambda: clients.run_operator(frame))
        if "latency" in args.what:
            frame = data.clean_frame(args.n or 20_000)
            emu.reset()
            emu.set_faults(latency_ms=50)
            profiled("latency", lambda: clients.run_operator(frame), interval=0.0005)
        if "request" in args.what:
            _profile_requests(profiled, emu, args.n or 30_000)
        emu.reset()
    return 0


def _profile_requests(profiled, emu, n: int) -> None:
    """The per-request client work of the operator and of the bare client, one thread each."""
    from urllib.parse import urlencode

    import requests

    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
    from airflow_provider_voxsms.sms.dispatch import outcome_of
    from airflow_provider_voxsms.sms.model import Batch
    from bench import data
    from bench.data import SENDER, TEXT

    numbers = data.unique_numbers(n)
    batches = [Batch(i // 100, TEXT, tuple(numbers[i : i + 100])) for i in range(0, n, 100)]
    hook = VoximplantHook()

    def operator_path() -> None:
        for batch in batches:
            outcome_of(batch, hook.a2p_send_sms(SENDER, list(batch.numbers), batch.text))

    emu.reset()
    hook.signer.token()
    profiled("request-operator", operator_path, full=True)

    token = hook.signer.token()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    bodies = [
        urlencode({"src_number": SENDER, "dst_numbers": ";".join(b.numbers), "text": TEXT})
        for b in batches
    ]
    session = requests.Session()
    url = f"{emu.base_url}/A2PSendSms"

    def bare_path() -> None:
        for body in bodies:
            session.post(url, data=body, headers=headers, timeout=60).json()

    emu.reset()
    profiled("request-bare", bare_path, full=True)


if __name__ == "__main__":
    sys.exit(main())
