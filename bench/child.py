"""Measurements that need a process of their own, so that peak memory is theirs alone.

``python -m bench.child '{"n": 1000000, "runs": 1, "send": false}'`` builds the mixed input
(:func:`bench.data.mixed_frame`), runs the operator with ``dry_run=True`` ``runs`` times, then,
if ``send``, sends it for real ``runs`` times (the emulator's connection and CA come from the
environment), and prints one JSON line with times and memory. :func:`measure` runs it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_RESULT = "BENCH-RESULT "


class PeakRss:
    """Samples this process's RSS every ``interval_s`` in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval_s: float = 0.005):
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0

    def now(self) -> int:
        return self._process.memory_info().rss

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def _reset_emulator() -> None:
    """POST /_emulator/reset on the emulator named by the connection in the environment."""
    import ssl
    import urllib.request

    origin = json.loads(os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"])["host"].rsplit("/", 1)[0]
    context = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    request = urllib.request.Request(origin + "/_emulator/reset", data=b"{}", method="POST")
    urllib.request.urlopen(request, context=context, timeout=30).close()


def _repeat(runs: int, step: Callable[[], Any], before: Callable[[], None] | None = None):
    times, peak = [], 0
    summary = None
    for _ in range(runs):
        if before:
            before()
        with PeakRss() as rss:
            start = time.perf_counter()
            summary = step()
            times.append(time.perf_counter() - start)
        peak = max(peak, rss.peak)
    return times, peak, summary


def main(spec: dict) -> dict:
    from bench.env import isolate_airflow, quiet_logs

    isolate_airflow()
    import airflow_provider_voxsms.operators.a2p_sms  # noqa: F401 - import cost is not the step's
    from bench import clients, data

    quiet_logs()
    n, runs = int(spec["n"]), int(spec.get("runs", 1))
    frame = data.mixed_frame(n)
    base = PeakRss().now()
    result: dict[str, Any] = {"n": n, "rss_base": base}

    def prepare():
        return clients.run_operator(frame, dry_run=True)[1]

    result["prepare_s"], prep_peak, summary = _repeat(runs, prepare)
    result["prepare_peak_rss"] = prep_peak
    result["valid"], result["batches"] = summary["valid"], summary["batches"]
    if spec.get("send"):

        def send():
            return clients.run_operator(frame)[1]

        result["send_s"], send_peak, summary = _repeat(runs, send, before=_reset_emulator)
        if summary["accepted"] != result["valid"]:
            raise RuntimeError(f"sent {summary['accepted']} of {result['valid']}: {summary}")
        result["send_peak_rss"] = send_peak
    result["max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def measure(spec: dict, timeout_s: float = 600) -> dict:
    """Run :func:`main` in a fresh interpreter and return its result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return child_result(done, _RESULT, "bench.child")


def child_result(done: subprocess.CompletedProcess, marker: str, what: str) -> dict:
    """The JSON a child process printed after ``marker``; RuntimeError naming ``what``, with
    the ends of its output, when it printed none."""
    for line in done.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    raise RuntimeError(
        f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


if __name__ == "__main__":
    print(_RESULT + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
