"""The three ways of sending that the benchmarks compare.

* :func:`run_operator`: ``A2PSendSmsOperator.execute()`` called directly with a minimal context
  (a stand-in task instance that keeps XComs in a dict). That is the operator's whole code path
  (prepare, plan, send, report, push outputs) minus Airflow's scheduler, task runner and XCom
  serialisation, which cost the same whatever the operator does.
* :func:`vendor_loop`: what users write today, a PythonOperator body looping over chunks of 100
  with the vendor's client (``voximplant-apiclient``): one request at a time, a new connection
  and a JWT signed from the PEM per request.
* :func:`pooled_ceiling`: the least work any client can do for the same requests: pre-built
  form bodies, one fixed token, a pooled ``requests.Session`` shared by ``threads`` threads.
  It measures what the emulator sustains on this machine: the ceiling for any client.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bench.data import REGION, SENDER, TEXT


@dataclass
class FakeTaskInstance:
    """What ``execute()`` needs from a task instance: ``xcom_push``, and its identity for the
    send ledger (a fresh run_id per instance: every timed run is a new campaign)."""

    xcoms: dict[str, Any] = field(default_factory=dict)
    dag_id: str = "bench"
    run_id: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex}")
    task_id: str = "bench_send"
    map_index: int = -1

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def run_operator(
    recipients, ti: FakeTaskInstance | None = None, **kwargs: Any
) -> tuple[float, dict, FakeTaskInstance]:
    """Build the operator with defaults (plus ``kwargs``) and time its ``execute()``; pass the
    ``ti`` of an earlier run to time a retry of the same task instance."""
    from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

    kwargs = {"text": TEXT, "src_number": SENDER, "default_region": REGION, **kwargs}
    operator = A2PSendSmsOperator(task_id="bench_send", recipients=recipients, **kwargs)
    ti = ti or FakeTaskInstance()
    start = time.perf_counter()
    summary = operator.execute({"ti": ti})
    return time.perf_counter() - start, summary, ti


def vendor_loop(credentials_path: str, endpoint: str, numbers: list[str]) -> float:
    """Time the vendor client sending ``numbers`` in chunks of 100, one request after another.

    TLS trust comes from ``REQUESTS_CA_BUNDLE``, which the vendor client reads per request.
    """
    from voximplant.apiclient import VoximplantAPI

    start = time.perf_counter()
    api = VoximplantAPI(credentials_path, endpoint=endpoint)
    accepted = 0
    for i in range(0, len(numbers), 100):
        answer = api.a2p_send_sms(SENDER, numbers[i : i + 100], TEXT)
        accepted += len(answer["result"])
    elapsed = time.perf_counter() - start
    if accepted != len(numbers):
        raise RuntimeError(f"vendor loop: {accepted} of {len(numbers)} accepted")
    return elapsed


def pooled_ceiling(
    base_url: str, credentials_json: str, numbers: list[str], threads: int = 16
) -> float:
    """Time ``threads`` threads posting pre-built A2PSendSms bodies through one pooled session."""
    import requests
    from requests.adapters import HTTPAdapter

    from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner

    token = TokenSigner(ServiceAccountCredentials.from_json(credentials_json)).token()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    url = f"{base_url}/A2PSendSms"
    bodies = [
        urlencode(
            {"src_number": SENDER, "dst_numbers": ";".join(numbers[i : i + 100]), "text": TEXT}
        )
        for i in range(0, len(numbers), 100)
    ]
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=threads)
    session.mount("https://", adapter)
    lock = threading.Lock()
    queue = iter(bodies)
    accepted = [0] * threads
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                answer = session.post(url, data=body, headers=headers, timeout=60).json()
                accepted[slot] += len(answer["result"])
        except BaseException as error:  # reported after the join
            errors.append(error)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start
    session.close()
    if errors:
        raise errors[0]
    if sum(accepted) != len(numbers):
        raise RuntimeError(f"pooled ceiling: {sum(accepted)} of {len(numbers)} accepted")
    return elapsed
