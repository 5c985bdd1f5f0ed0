"""Each fault mode, switched on through configuration (Python or the HTTP endpoint)."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_voxsms.emulator import Faults

SENDER = "447443332211"
BATCH = [f"44744000{i:04d}" for i in range(100)]


def send(api, numbers=BATCH, **kw):
    return api.call("A2PSendSms", src_number=SENDER, dst_numbers=";".join(numbers), text="hi", **kw)


def test_latency(api):
    api.server.state.set_faults(latency_ms=150)
    start = time.perf_counter()
    assert send(api).status_code == 200
    assert time.perf_counter() - start >= 0.15


@pytest.mark.parametrize(("field", "status"), [("http_429_rate", 429), ("http_503_rate", 503)])
def test_http_throttling_statuses_come_before_auth_and_store_nothing(api, field, status):
    api.server.state.set_faults(**{field: 1.0}, retry_after_s=3)
    r = send(api, headers={})
    assert r.status_code == status
    assert not r.headers["content-type"].startswith("application/json")
    if status == 429:
        assert r.headers["retry-after"] == "3"
    assert api.server.state.messages == []
    assert api.introspect("stats")["http_faults"] == {str(status): 1}


def test_error_340_and_416(api):
    api.server.state.set_faults(error_340_rate=1.0)
    assert send(api).json()["error"]["code"] == 340
    api.server.state.set_faults(error_340_rate=0.0, error_416_rate=1.0, retry_after_s=7)
    r = send(api)
    assert r.status_code == 200
    assert r.json()["error"] == {"code": 416, "msg": "Repeat after 7 seconds"}
    assert api.server.state.messages == []


def test_insufficient_money_until_top_up(api):
    api.server.state.set_faults(insufficient_money_after=150)
    assert len(send(api).json()["result"]) == 100
    assert len(send(api).json()["result"]) == 100  # started below the limit: processed whole
    assert send(api).json()["error"]["code"] == 127
    assert api.ok("GetAccountInfo")["result"]["balance"] == 0
    r = api.session.post(
        f"{api.server.origin}/_emulator/faults", json={"insufficient_money_after": None}
    )
    assert r.json()["insufficient_money_after"] is None
    assert len(send(api).json()["result"]) == 100
    assert api.server.state.accepted_count == 300


def test_blocked_numbers_via_http(api):
    r = api.session.post(
        f"{api.server.origin}/_emulator/faults", json={"blocked_numbers": BATCH[:2]}
    )
    assert r.json()["blocked_numbers"] == BATCH[:2]
    body = send(api, BATCH[:3]).json()
    assert [f["error_code"] for f in body["failed"]] == [509, 509]
    assert [x["destination_number"] for x in body["result"]] == BATCH[2:3]


def test_process_then_500_stores_the_messages(api):
    api.server.state.set_faults(process_then_500_rate=1.0)
    r = send(api, BATCH[:5])
    assert r.status_code == 500
    assert len(api.server.state.messages) == 5
    api.server.state.set_faults(process_then_500_rate=0.0)
    assert send(api, BATCH[:5]).status_code == 200  # the naive retry
    assert api.introspect("stats")["duplicates"] == 5


def test_reset_connection_cuts_the_answer_without_processing(api):
    api.server.state.set_faults(reset_connection_rate=1.0)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        send(api, BATCH[:5])
    assert api.server.state.messages == []
    api.server.state.set_faults(reset_connection_rate=0.0)
    assert send(api, BATCH[:5]).status_code == 200


def test_slow_response_trips_a_read_timeout_and_is_then_processed(api):
    api.server.state.set_faults(slow_response_s=0.5)
    with pytest.raises(requests.ReadTimeout):
        send(api, BATCH[:1], timeout=0.1)
    deadline = time.monotonic() + 3
    while not api.server.state.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(api.server.state.messages) == 1  # ambiguous for the client, as in real life


def test_seeded_rates_are_deterministic(api):
    def outcomes():
        api.server.state.set_faults(Faults(seed=42, error_340_rate=0.5))
        return ["error" in send(api, BATCH[:1]).json() for _ in range(20)]

    first = outcomes()
    api.server.state.set_faults(seed=None)
    assert outcomes() == first
    assert 0 < sum(first) < 20


def test_reset_restores_initial_faults(api):
    api.server.state.set_faults(error_340_rate=1.0)
    api.session.post(f"{api.server.origin}/_emulator/reset")
    assert api.server.state.faults == Faults()
    assert "result" in send(api, BATCH[:1]).json()


@pytest.mark.parametrize(
    "payload", [{"error_340_rate": 2}, {"no_such_fault": 1}, [1, 2], {"latency_ms": "slow"}]
)
def test_bad_fault_config_is_rejected(api, payload):
    r = api.session.post(f"{api.server.origin}/_emulator/faults", json=payload)
    assert r.status_code == 400 and "error" in r.json()
    assert api.server.state.faults == Faults()


def test_replace_faults(api):
    api.server.state.set_faults(error_340_rate=1.0, latency_ms=5)
    r = api.session.post(
        f"{api.server.origin}/_emulator/faults?replace=true", json={"latency_ms": 1}
    )
    assert r.json()["error_340_rate"] == 0.0 and r.json()["latency_ms"] == 1
