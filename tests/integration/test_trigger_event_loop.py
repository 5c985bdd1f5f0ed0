"""The delivery trigger never holds the triggerer's event loop: 1,000,000 open ids, asyncio debug.

The triggerer's loop is shared by every deferred task of a deployment, so one callback that runs
for long (a file read, loading a key, sorting a million ids) stalls them all. Here the real
trigger (``A2PSmsDeliveryTrigger.run``: the XCom's ids decoded, the async hook's set-up with
credentials read from ``credentials_path``, a PEM key and CA certificates, two rounds of 1,000
and 500 history calls) runs on a loop in debug mode with ``slow_callback_duration = 0.1``, and
any "Executing ... took" warning fails the test (the heap built before the run is frozen, so
that a garbage collection measures what the run allocated). Only the network is replaced: the hook sends
through an ``httpx.MockTransport`` whose handler answers like the API (the emulator, answering
a million ids in its own thread of this process, would compete for the GIL and measure itself).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import time
from urllib.parse import parse_qsl

import httpx
import numpy as np
import pytest

from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook
from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger

# Wall-clock steps: another test's load on the same cores would be measured too.
pytestmark = pytest.mark.serial

# A step may take 0.1 s: the grain of Airflow's own watch (its triggerer sleeps 0.1 s and
# warns when that took longer). At 0.05 s the test measured the machine: one step of 56-74 ms
# in one of three runs alone on an idle 2-vCPU machine, where our steps take 10-20 ms.
SLOW_S = 0.1
IDS_XCOM = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "key": "ids"}


class History:
    """A2PGetSmsHistory for ``ids``: the first time an id is asked about, odd ids are DELIVERED
    and even ones QUEUED; from then on all are DELIVERED. ``block_s``: one answer that holds
    the loop that long (to prove the watch sees it)."""

    def __init__(self, ids: np.ndarray, block_s: float = 0.0):
        self.asked = np.zeros(int(ids.max()) + 1, dtype=bool)
        self.block_s = block_s
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.block_s and self.calls == 3:
            time.sleep(self.block_s)  # a deliberately blocking step
        form = dict(parse_qsl(request.content.decode()))
        ids = np.array(form["message_id"].split(";"), dtype=np.int64)
        final = self.asked[ids] | (ids % 2 == 1)
        self.asked[ids] = True
        rows = [
            {"message_id": i, "delivery_status": "DELIVERED" if done else "QUEUED", "cost": 0.03}
            for i, done in zip(ids.tolist(), final.tolist(), strict=True)
        ]
        return httpx.Response(200, json={"result": rows, "total_count": len(rows)})


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode warnings about callbacks that held the loop."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.seen.append(message)


@pytest.fixture
def slow_callbacks():
    watch, logger = SlowCallbacks(), logging.getLogger("asyncio")
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.WARNING)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(level)


@pytest.fixture
def connection(monkeypatch, tmp_path, credentials_json):
    """A connection whose credentials are a file (read at set-up) and whose TLS trust is a
    CA bundle (loaded at set-up)."""
    import certifi

    path = tmp_path / "credentials.json"
    path.write_text(credentials_json)
    extra = {"credentials_path": str(path), "ca_bundle": certifi.where()}
    conn = {"conn_type": "voximplant", "host": "https://api.voximplant.test/platform_api"}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn | {"extra": extra}))


def follow_in_debug_mode(monkeypatch, ids: np.ndarray, api: History) -> tuple[dict, float]:
    """Run the trigger to its event on a debug-mode loop; returns the event and seconds."""
    encoded = delivery.encode_ids(ids)  # what the task pushes before it defers

    async def read_xcom(**ref):
        assert ref == IDS_XCOM
        return encoded

    # The trigger imports these in a thread when it starts, from their modules.
    monkeypatch.setattr("airflow_provider_voxsms.compat.read_xcom", read_xcom)
    transport = httpx.MockTransport(api)
    hook = functools.partial(VoximplantAsyncHook, transport=transport)
    monkeypatch.setattr("airflow_provider_voxsms.hooks.voximplant.VoximplantAsyncHook", hook)
    trigger = A2PSmsDeliveryTrigger(
        ids_xcom=IDS_XCOM,
        src_number="VoxDemo",
        deadline=time.time() + 600,
        poll_interval=0.01,
        max_poll_interval=0.01,
    )

    async def first_event() -> dict:
        return (await anext(trigger.run())).payload

    # The heap this process built before (pytest, Airflow, pandas: ~200,000 objects) is frozen,
    # so a full garbage collection during the run walks what the run allocated, not the test
    # runner's heap (~0.2 s here, whichever callback it happens to fall in).
    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(debug=True) as runner:
            runner.get_loop().slow_callback_duration = SLOW_S
            started = time.perf_counter()
            event = runner.run(first_event())
            return event, time.perf_counter() - started
    finally:
        gc.unfreeze()


def campaign_ids(n: int) -> np.ndarray:
    """``n`` ids 1 to 10 apart: a campaign interleaved with the account's other traffic."""
    return np.cumsum(np.random.default_rng(19).integers(1, 11, size=n)) + 10_000_000


def test_a_million_open_ids_never_hold_the_loop(monkeypatch, connection, slow_callbacks):
    ids = campaign_ids(1_000_000)
    api = History(ids)
    event, seconds = follow_in_debug_mode(monkeypatch, ids, api)
    assert event["status"] == "done", event
    assert event["messages"] == 1_000_000 and event["counts"] == {"DELIVERED": 1_000_000}
    assert event["rounds"] == 2 and event["calls"] == api.calls == 1_500, "1,000 ids per call"
    assert slow_callbacks.seen == [], f"the loop was held ({seconds:.1f} s in all)"


def test_the_watch_sees_a_blocking_step(monkeypatch, connection, slow_callbacks):
    ids = campaign_ids(5_000)
    event, _ = follow_in_debug_mode(monkeypatch, ids, History(ids, block_s=2 * SLOW_S))
    assert event["status"] == "done"
    assert len(slow_callbacks.seen) == 1 and "took" in slow_callbacks.seen[0]
