"""The delivery follower (sms/follow.py): compact open ids, rounds, concurrency, the poll loop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from airflow_provider_voxsms.errors import (
    ConfigurationError,
    VoximplantApiError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.sms import follow, history
from airflow_provider_voxsms.sms.follow import DeliveryFollower, FollowSettings, OpenIds


class FakeHistory:
    """Async A2PGetSmsHistory over a dict {message_id: status}, honouring message_id, count,
    offset; ``latency`` seconds per call; ``fail`` raises instead of answering when it
    returns an exception for the call's parameters."""

    def __init__(self, statuses: dict[int, str], page_cap: int = 1000, latency: float = 0.0):
        self.statuses = statuses
        self.page_cap = page_cap
        self.latency = latency
        self.calls: list[dict] = []
        self.fail = lambda params: None
        self.in_flight = self.peak = 0

    async def a2p_get_sms_history(self, **params):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        if (error := self.fail(params)) is not None:
            raise error
        self.calls.append(params)
        ids = params["message_id"]
        assert len(ids) <= 1000 and params["count"] <= 1000
        rows = [
            {"message_id": i, "delivery_status": self.statuses[i], "fragments": 1}
            for i in sorted(ids)
            if i in self.statuses
        ]
        offset, count = params["offset"], min(params["count"], self.page_cap)
        return {"result": rows[offset : offset + count], "total_count": len(rows)}


def follower(ids, api, **settings) -> DeliveryFollower:
    return DeliveryFollower(api, OpenIds(ids), FollowSettings(**settings))


def one_round(f: DeliveryFollower) -> int:
    return asyncio.run(f.poll_round())


def open_set(f: DeliveryFollower) -> set[int]:
    return set(f.open.open_ids().tolist())


def test_queries_ask_at_most_1000_ids_each_and_a_million_cost_1000_calls():
    ids = OpenIds(range(1_000_000, 0, -1)).open_ids()  # sorted once, when made
    queries = list(history.id_queries(ids, source_number="VoxDemo"))
    assert len(queries) == 1000
    assert all(len(q["message_id"]) == 1000 and q["count"] == 1000 for q in queries)
    assert queries[0]["message_id"][:2] == [1, 2] and queries[0]["source_number"] == "VoxDemo"
    assert "source_number" not in next(history.id_queries([5], source_number=None))


def test_open_ids_are_a_sorted_array_and_a_mask():
    ids = OpenIds([30, 10, 20, 10, 40])
    assert ids.total == 4 and len(ids) == 4 and ids.open_ids().tolist() == [10, 20, 30, 40]
    closed = ids.close(np.array([20, 99, 40], dtype=np.int64))
    assert closed.tolist() == [True, False, True] and len(ids) == 2
    assert ids.close(np.array([20], dtype=np.int64)).tolist() == [False], "closed once"
    assert ids.is_open(np.array([10, 20, 5], dtype=np.int64)).tolist() == [True, False, False]
    assert ids.open_ids().tolist() == [10, 30] and ids.total == 4
    ids.close(np.array([10, 30], dtype=np.int64))
    assert ids.done and ids.open_ids().tolist() == []
    assert OpenIds(np.arange(1_000_000)).nbytes == 9_000_000


def test_tracker_polls_only_what_is_open_and_pages_a_short_answer():
    statuses = {i: "QUEUED" for i in range(1, 2501)}
    api = FakeHistory(statuses, page_cap=600)
    f = follower(statuses, api, max_concurrency=1)
    one_round(f)
    assert open_set(f) == set(statuses) and f.rounds == 1
    # 3 chunks (1000, 1000, 500 ids); a 600-row page cap makes the full ones take 2 calls
    assert f.calls == len(api.calls) == 5
    assert [c["offset"] for c in api.calls] == [0, 600, 0, 600, 0]

    for i in range(1, 2001):
        statuses[i] = "DELIVERED" if i % 2 else "FAILED"
    api.calls.clear()
    one_round(f)
    assert open_set(f) == set(range(2001, 2501))
    assert f.counts == {"DELIVERED": 1000, "FAILED": 1000}
    api.calls.clear()
    one_round(f)
    assert len(api.calls) == 1 and api.calls[0]["message_id"][0] == 2001


def test_a_message_the_history_does_not_show_stays_open():
    f = follower([1, 2], FakeHistory({1: "DELIVERED"}))
    one_round(f)
    assert open_set(f) == {2} and not f.open.done


def test_each_message_is_handed_on_once_when_final_and_pending_ones_in_the_last_round():
    statuses = {1: "DELIVERED", 2: "QUEUED", 3: "DISPATCHED"}
    done: list[list[dict]] = []
    f = DeliveryFollower(FakeHistory(statuses), OpenIds([1, 2, 3, 4]), on_done=done.append)
    asyncio.run(f.poll_round())
    assert [[r["message_id"] for r in rows] for rows in done] == [[1]]
    statuses[2] = "EXPIRED"
    asyncio.run(f.poll_round())
    assert [r["message_id"] for r in done[-1]] == [2] and len(done) == 2
    assert f.state() == {
        "messages": 4,
        "open": 2,
        "counts": {"DELIVERED": 1, "EXPIRED": 1},
        "rounds": 2,
        "calls": 2,
    }
    # The last round: 3 is still DISPATCHED, so it is handed on as it is; 4 is not shown.
    asyncio.run(f.poll_round(last=True))
    assert [(r["message_id"], r["delivery_status"]) for r in done[-1]] == [(3, "DISPATCHED")]
    assert open_set(f) == {4} and f.final == 2
    assert f.state()["open"] == 2 and f.state()["counts"] == {"DELIVERED": 1, "EXPIRED": 1}


def test_back_off_doubles_while_idle_capped_and_never_past_the_deadline():
    assert follow.next_delay(60, 0, 10_000, 900) == 60
    assert follow.next_delay(60, 1, 10_000, 900) == 120
    assert follow.next_delay(60, 3, 10_000, 900) == 480
    assert follow.next_delay(60, 10, 10_000, 900) == 900
    assert follow.next_delay(60, 10, 30, 900) == 30
    assert follow.next_delay(60, 0, -5, 900) == 0


def test_a_round_applies_each_answer_as_it_comes_so_a_failed_call_keeps_earlier_progress():
    statuses = dict.fromkeys(range(1, 2001), "DELIVERED")
    api = FakeHistory(statuses)
    f = follower(statuses, api, max_concurrency=1)
    api.fail = lambda params: ConnectionError("the network went away") if api.calls else None
    with pytest.raises(ConnectionError):
        one_round(f)
    assert open_set(f) == set(range(1001, 2001)), "the first answer's 1,000 are final"
    api.fail = lambda params: None
    assert one_round(f) == 1000 and f.open.done


def test_a_concurrent_round_finds_the_same_with_calls_in_flight_together():
    statuses = {i: ("FAILED" if i % 10 == 0 else "DELIVERED") for i in range(1, 4501)}
    api = FakeHistory(statuses, page_cap=700, latency=0.02)
    f = follower(statuses, api, max_concurrency=4)
    assert one_round(f) == 4500
    assert f.open.done and f.counts == {"FAILED": 450, "DELIVERED": 4050}
    assert f.calls == len(api.calls) == 9 and f.rounds == 1  # 4 x 2 pages + 1
    assert api.peak == 4


def test_a_concurrent_round_raises_the_first_error():
    api = FakeHistory({}, latency=0.01)
    api.fail = lambda params: ConnectionError("down")
    f = follower(range(1, 5001), api, max_concurrency=3)
    with pytest.raises(ConnectionError):
        one_round(f)
    assert len(f.open) == 5000 and api.in_flight == 0, "the other calls were stopped"


class Clock:
    """Epoch seconds that move only when the follower sleeps."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(f: DeliveryFollower) -> str:
    return asyncio.run(f.run())


def polled(api, ids, clock, **settings) -> DeliveryFollower:
    settings = {"deadline": clock.now + 100, "poll_interval": 1, "max_poll_interval": 8} | settings
    return DeliveryFollower(
        api, OpenIds(ids), FollowSettings(**settings), clock=clock.time, sleep=clock.sleep
    )


def test_run_polls_until_every_message_is_final():
    statuses = {1: "QUEUED", 2: "QUEUED"}
    api, clock = FakeHistory(statuses), Clock()
    f = polled(api, [1, 2], clock)
    original = api.a2p_get_sms_history

    async def finishing(**params):
        if len(api.calls) == 3:  # the fourth call: one final; the fifth: both
            statuses[1] = "DELIVERED"
        if len(api.calls) == 4:
            statuses[2] = "FAILED"
        return await original(**params)

    api.a2p_get_sms_history = finishing
    assert run(f) == "done"
    assert f.rounds == 5 and f.counts == {"DELIVERED": 1, "FAILED": 1}
    assert clock.sleeps == [1, 2, 4, 1], "doubling while idle, back to the interval after"


def test_run_stops_at_the_deadline_with_what_is_open():
    api, clock = FakeHistory({1: "DELIVERED", 2: "DISPATCHED"}), Clock()
    f = polled(api, [1, 2], clock, deadline=clock.now + 10)
    assert run(f) == "timeout"
    assert f.state()["open"] == 1 and sum(clock.sleeps) == 10, "the last round at the deadline"
    assert f.rounds == len(api.calls) == 6 and clock.sleeps == [1, 1, 2, 4, 2]


def test_a_round_that_ends_past_the_deadline_is_followed_by_the_last_one():
    """The last round is the one that starts at the deadline: it hands on what is pending."""
    api, clock = FakeHistory({1: "DISPATCHED"}), Clock()
    original = api.a2p_get_sms_history

    async def slow(**params):
        clock.now += 7  # a round of 7 s, its deadline 5 s away
        return await original(**params)

    api.a2p_get_sms_history = slow
    done: list[dict] = []
    settings = FollowSettings(deadline=clock.now + 5, poll_interval=1, max_poll_interval=8)
    f = DeliveryFollower(
        api, OpenIds([1]), settings, on_done=done.extend, clock=clock.time, sleep=clock.sleep
    )
    assert run(f) == "timeout"
    assert f.rounds == 2 and clock.sleeps == [0.0]
    assert [row["delivery_status"] for row in done] == ["DISPATCHED"]


def test_a_past_deadline_is_one_round_that_hands_on_every_message_shown():
    api = FakeHistory({1: "DELIVERED", 2: "QUEUED"})
    done: list[dict] = []
    f = DeliveryFollower(api, OpenIds([1, 2, 3]), FollowSettings(deadline=0), on_done=done.extend)
    assert run(f) == "timeout" and f.rounds == 1
    assert sorted(row["message_id"] for row in done) == [1, 2] and open_set(f) == {3}


def test_a_failed_round_is_retried_by_the_next_and_a_stopping_error_raises():
    api, clock = FakeHistory({1: "DELIVERED"}), Clock()
    failures = [VoximplantTransportError("A2PGetSmsHistory", "reset", maybe_processed=True)]
    api.fail = lambda params: failures.pop() if failures else None
    f = polled(api, [1], clock)
    assert run(f) == "done" and f.rounds == 1 and clock.sleeps == [1]

    for stop in (
        VoximplantApiError("A2PGetSmsHistory", 100, "Authorization failed"),
        ConfigurationError("bad extra"),
    ):
        api.fail = lambda params, stop=stop: stop
        with pytest.raises(type(stop)):
            run(polled(api, [1], Clock()))
        assert follow.stops_following(stop)
    assert not follow.stops_following(VoximplantApiError("A2PGetSmsHistory", 340, "Rate"))


def test_nothing_to_follow_is_done_without_a_call():
    api = FakeHistory({})
    assert run(polled(api, [], Clock())) == "done" and api.calls == []
