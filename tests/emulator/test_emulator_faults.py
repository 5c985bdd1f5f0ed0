"""Each fault mode, switched on through configuration (Python or the HTTP endpoint)."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_voxsms.emulator import Faults
from airflow_provider_voxsms.emulator.state import EmulatorState

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
    stats = api.introspect("stats")  # the request was read (its cmd= came in the body) ...
    assert stats["per_method"] == {"A2PSendSms": 1} and stats["http_faults"] == {"0": 1}
    assert stats["accepted"] == 0  # ... and not processed
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


def history(api, **filters) -> list[str]:
    return [row["destination_number"] for row in api.ok("A2PGetSmsHistory", **filters)["result"]]


def test_history_lag_hides_a_message_until_the_lag_has_passed(api):
    state = api.server.state
    send(api, BATCH[:1])  # sent before the lag: visible at once, and stays visible
    state.set_faults(history_lag_s=0.5)
    message_id = send(api, BATCH[1:2]).json()["result"][0]["message_id"]
    assert len(state.messages) == 2  # accepted and stored, just not in the history yet
    assert history(api) == BATCH[:1]
    assert history(api, message_id=message_id) == []
    assert history(api, destination_number=BATCH[1]) == []

    lagged = state.messages[1]
    assert lagged.visible_at == lagged.time + 0.5
    time.sleep(max(0.0, lagged.visible_at - time.time()) + 0.05)
    assert history(api) == BATCH[:2]
    assert history(api, message_id=message_id) == BATCH[1:2]


def test_http_503_burst_answers_the_next_sends_then_serves_them(api):
    state = api.server.state
    state.set_faults(http_503_burst=3)
    for _ in range(3):
        r = send(api, BATCH[:2])
        assert r.status_code == 503
        assert r.text == "503 Service Temporarily Unavailable"
        assert not r.headers["content-type"].startswith("application/json")
        assert api.call("GetAccountInfo").status_code == 200  # only A2PSendSms counts down
    assert state.messages == []  # none of them was processed
    assert send(api, BATCH[:2]).status_code == 200
    assert send(api, BATCH[2:4]).status_code == 200
    assert len(state.messages) == 4
    assert api.introspect("stats")["http_faults"] == {"503": 3}


def test_http_503_burst_is_rearmed_by_setting_it_and_cleared_by_reset(api):
    state = api.server.state
    state.set_faults(http_503_burst=1)
    assert send(api, BATCH[:1]).status_code == 503
    state.set_faults(error_340_rate=0.0)  # another field: the spent burst stays spent
    assert send(api, BATCH[:1]).status_code == 200
    r = api.session.post(f"{api.server.origin}/_emulator/faults", json={"http_503_burst": 2})
    assert r.json()["http_503_burst"] == 2
    assert [send(api, BATCH[:1]).status_code for _ in range(3)] == [503, 503, 200]

    state.set_faults(http_503_burst=5)
    api.session.post(f"{api.server.origin}/_emulator/reset")
    assert state.faults.http_503_burst == 0
    assert send(api, BATCH[:1]).status_code == 200


@pytest.mark.parametrize(
    "changes", [{"history_lag_s": -1}, {"http_503_burst": -1}, {"http_503_burst": 1.5}]
)
def test_new_faults_reject_bad_values(api, changes):
    with pytest.raises(ValueError, match="must"):  # a known field with a bad value
        Faults().patched(changes)


def test_reset_rearms_a_burst_the_state_started_with():
    state = EmulatorState(
        faults=Faults(http_503_burst=1)
    )  # e.g. voxsms-emulator --http-503-burst 1
    assert [state.take_503_burst() for _ in range(2)] == [True, False]
    state.reset()
    assert state.take_503_burst() is True
