"""A2PSmsDeliveryTrigger over real HTTP to the emulator: rounds, timeout, throttling, stops.

These run the trigger outside Airflow, so the ids it would read from XCom are handed to it
(``load_ids`` is replaced); reading them from a real XCom is covered by the deferred DAG runs
in tests/dags/test_delivery_report.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook, VoximplantHook
from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.follow import DeliveryFollower, FollowSettings, OpenIds
from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger

NUMBERS = [f"4474433322{i:02d}" for i in range(10, 20)]


def send(emulator) -> list[int]:
    hook = VoximplantHook()
    return [row["message_id"] for row in hook.a2p_send_sms("VoxDemo", NUMBERS, "hi").result]


def fire(trigger: A2PSmsDeliveryTrigger) -> dict:
    async def first():
        return await anext(trigger.run())

    return asyncio.run(first()).payload


IDS_XCOM = {
    "dag_id": "d",
    "run_id": "r",
    "task_id": "delivery",
    "map_index": -1,
    "key": "followed_message_ids",
}


def trigger(ids, **kwargs) -> A2PSmsDeliveryTrigger:
    kwargs.setdefault("deadline", time.time() + 10)
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("max_poll_interval", 0.4)
    made = A2PSmsDeliveryTrigger(ids_xcom=IDS_XCOM, started=1.0, **kwargs)
    encoded = delivery.encode_ids(ids)

    async def load_ids(parts) -> OpenIds:
        return OpenIds.decode(encoded)

    made.load_ids = load_ids
    return made


def test_fires_done_once_every_message_is_final(voximplant_conn):
    # Queued long enough that the first round surely finds them open, also on a busy machine.
    voximplant_conn.state.set_faults(delivery_queued_s=1.5, delivery_by_last_digit="3=FAILED")
    ids = send(voximplant_conn)
    event = fire(trigger(ids, src_number="VoxDemo"))
    assert event["status"] == "done" and event["open"] == 0 and event["messages"] == 10
    assert event["counts"] == {"DELIVERED": 9, "FAILED": 1}
    assert event["rounds"] >= 2 and event["started"] == 1.0


def test_fires_timeout_at_the_deadline_with_what_is_open(voximplant_conn):
    voximplant_conn.state.set_faults(delivery_by_last_digit="8=NEVER,9=NEVER")
    ids = send(voximplant_conn)
    started = time.monotonic()
    event = fire(trigger(ids, deadline=time.time() + 1.0))
    assert 0.9 < time.monotonic() - started < 5
    assert event["status"] == "timeout" and event["open"] == 2
    assert event["counts"] == {"DELIVERED": 8}


def test_throttling_is_retried_with_the_hooks_back_off(voximplant_conn):
    ids = send(voximplant_conn)
    voximplant_conn.state.set_faults(http_429_rate=0.5, error_340_rate=0.3, retry_after_s=0, seed=1)
    event = fire(trigger(ids, hook_params={"backoff_initial_s": 0.01, "backoff_max_s": 0.05}))
    assert event["status"] == "done" and event["counts"] == {"DELIVERED": 10}
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["http_faults"].get("429", 0) + stats["api_errors"].get("340", 0) > 0


def test_a_stopping_error_fires_an_error_event(voximplant_conn, monkeypatch, credentials_json):
    ids = send(voximplant_conn)
    conn = json.loads(voximplant_conn.connection_json())
    conn["password"] = credentials_json  # a key the emulator does not know: error 433
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    event = fire(trigger(ids))
    assert event["status"] == "error" and "433" in event["message"]


def test_serialised_state_names_the_ids_instead_of_carrying_them():
    classpath, kwargs = A2PSmsDeliveryTrigger(ids_xcom=IDS_XCOM, deadline=1.0).serialize()
    assert classpath == "airflow_provider_voxsms.triggers.delivery.A2PSmsDeliveryTrigger"
    assert kwargs["ids_xcom"] == IDS_XCOM and len(json.dumps(kwargs)) < 1000
    assert A2PSmsDeliveryTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_loading_the_trigger_class_imports_nothing_heavy():
    """The triggerer imports a trigger's module on its event loop: this one leaves the
    follower, numpy, pandas and the hook to a thread at run time (seconds on a busy machine)."""
    import subprocess
    import sys

    heavy = ("numpy", "pandas", "airflow_provider_voxsms.sms.follow", "requests", "tenacity")
    code = (
        "import sys, airflow.triggers.base; before = set(sys.modules); "
        "import airflow_provider_voxsms.triggers.delivery; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_trigger_of_a_process_freezes_the_heap_for_the_collector(monkeypatch):
    """A full collection of a triggerer's heap held its loop for over a second on a busy
    machine: the first trigger moves what exists then out of the collector's way, once."""
    import gc

    from airflow_provider_voxsms.triggers import delivery as trigger_module

    monkeypatch.setattr(trigger_module, "_frozen", False)
    freezes = []
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), real_freeze()))
    gc.unfreeze()
    try:
        trigger_module._load()
        assert gc.get_freeze_count() > 10_000, "the modules and their objects"
        assert len(freezes) == 2, "before the imports and after them"
        trigger_module._load()
        # Counted as calls: the number of frozen objects drops as reference counting frees some.
        assert len(freezes) == 2, "the first trigger of a process only"
    finally:
        gc.unfreeze()


def test_missing_ids_fire_an_error_event_that_says_what_to_do(monkeypatch):
    async def no_value(**ref):
        assert ref == IDS_XCOM
        return None

    monkeypatch.setattr("airflow_provider_voxsms.compat.read_xcom", no_value)
    event = fire(A2PSmsDeliveryTrigger(ids_xcom=IDS_XCOM, deadline=time.time() + 5))
    assert event["status"] == "error"
    assert "followed_message_ids" in event["message"] and "clear the task" in event["message"]


@pytest.mark.parametrize("n_open", [1, 1000, 1001, 2500])
def test_a_round_costs_one_call_per_1000_open_messages(voximplant_conn, n_open):
    async def calls():
        async with VoximplantAsyncHook() as hook:
            follower = DeliveryFollower(hook, OpenIds(range(1, n_open + 1)))
            await follower.poll_round()
        return follower.calls

    assert asyncio.run(calls()) == -(-n_open // 1000)


def test_a_round_runs_its_calls_concurrently(voximplant_conn):
    voximplant_conn.state.set_faults(latency_ms=300)  # long enough to overlap on a busy machine

    async def one_round(concurrency):
        fast = {"max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.01}
        settings = FollowSettings(max_concurrency=concurrency)
        async with VoximplantAsyncHook(**fast) as hook:
            follower = DeliveryFollower(hook, OpenIds(range(1, 8001)), settings)
            await follower.poll_round()
        return follower.calls

    assert asyncio.run(one_round(4)) == 8
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["max_in_flight"] == 4, "the round's calls were in flight together, 4 at most"
    voximplant_conn.state.set_faults(latency_ms=10, error_340_rate=1.0)
    with pytest.raises(Exception, match="340"):
        asyncio.run(one_round(4))
