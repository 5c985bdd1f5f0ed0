"""The delivery polling core (sms/delivery.py): chunked queries, statuses, back-off, outputs."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.model import FAILED_COLUMNS


class FakeHistory:
    """A2PGetSmsHistory over a dict {message_id: status}, honouring message_id, count, offset."""

    def __init__(self, statuses: dict[int, str], page_cap: int = 1000):
        self.statuses = statuses
        self.page_cap = page_cap
        self.calls: list[dict] = []

    def __call__(self, **params):
        self.calls.append(params)
        ids = params["message_id"]
        assert len(ids) <= 1000 and params["count"] <= 1000
        rows = [
            {
                "message_id": i,
                "destination_number": f"44{i}",
                "delivery_status": self.statuses[i],
                "error_message": "absent subscriber" if self.statuses[i] == "FAILED" else "",
                "fragments": 2,
                "cost": "0.065",
                "processing_date": "2026-01-01 00:00:00",
            }
            for i in sorted(ids)
            if i in self.statuses
        ]
        offset, count = params["offset"], min(params["count"], self.page_cap)
        return {"result": rows[offset : offset + count], "total_count": len(rows)}


def test_queries_ask_at_most_1000_ids_each_and_a_million_cost_1000_calls():
    queries = delivery.history_queries(range(1_000_000, 0, -1), src_number="VoxDemo")
    assert len(queries) == 1000
    assert all(len(q["message_id"]) == 1000 and q["count"] == 1000 for q in queries)
    assert queries[0]["message_id"][:2] == [1, 2] and queries[0]["source_number"] == "VoxDemo"
    assert "source_number" not in delivery.history_queries([5])[0]


def test_statuses_by_name_or_code_and_what_is_final():
    assert delivery.status_name("delivered") == "DELIVERED"
    assert delivery.status_name(7) == "EXPIRED" and delivery.status_name("2") == "DISPATCHED"
    assert delivery.status_name("SOMETHING_NEW") is None
    assert {
        "DELIVERED",
        "FAILED",
        "EXPIRED",
        "REJECTED",
        "ABORTED",
        "UNKNOWN",
    } == delivery.FINAL_STATUSES
    assert not delivery.parse_row({"message_id": 1, "delivery_status": "SOMETHING_NEW"}).final
    assert delivery.parse_row({"delivery_status": "DELIVERED"}) is None


def test_tracker_polls_only_what_is_open_and_pages_a_short_answer():
    statuses = {i: "QUEUED" for i in range(1, 2501)}
    history = FakeHistory(statuses, page_cap=600)
    tracker = delivery.DeliveryTracker(statuses)
    delivery.run_round(tracker.round(), history)
    assert tracker.open == set(statuses) and tracker.rounds == 1
    # 3 chunks (1000, 1000, 500 ids); a 600-row page cap makes the full ones take 2 calls
    assert tracker.calls == len(history.calls) == 5
    assert [c["offset"] for c in history.calls] == [0, 600, 0, 600, 0]

    for i in range(1, 2001):
        statuses[i] = "DELIVERED" if i % 2 else "FAILED"
    history.calls.clear()
    delivery.run_round(tracker.round(), history)
    assert tracker.open == set(range(2001, 2501))
    assert tracker.counts == {"DELIVERED": 1000, "FAILED": 1000}
    history.calls.clear()
    delivery.run_round(tracker.round(), history)
    assert len(history.calls) == 1 and history.calls[0]["message_id"][0] == 2001


def test_a_message_the_history_does_not_show_stays_open():
    tracker = delivery.DeliveryTracker([1, 2])
    delivery.run_round(tracker.round(), FakeHistory({1: "DELIVERED"}))
    assert tracker.open == {2} and not tracker.done


def test_back_off_doubles_while_idle_capped_and_never_past_the_deadline():
    assert delivery.next_delay(60, 0, 10_000, 900) == 60
    assert delivery.next_delay(60, 1, 10_000, 900) == 120
    assert delivery.next_delay(60, 3, 10_000, 900) == 480
    assert delivery.next_delay(60, 10, 10_000, 900) == 900
    assert delivery.next_delay(60, 10, 30, 900) == 30
    assert delivery.next_delay(60, 0, -5, 900) == 0


def test_messages_from_frames_lists_of_frames_and_plain_ids():
    frame = pd.DataFrame({"destination_number": ["4471", "4472"], "message_id": [11, 12]})
    assert delivery.messages_frame(frame)["message_id"].tolist() == [11, 12]
    mapped = delivery.messages_frame([frame, frame.assign(message_id=[13, 12])])
    assert mapped["message_id"].tolist() == [11, 12, 13]
    plain = delivery.messages_frame([5, "6", 5])
    assert plain["message_id"].tolist() == [5, 6]
    assert plain["destination_number"].isna().all()
    assert delivery.messages_frame(None).empty
    with pytest.raises(ValueError, match="message_id"):
        delivery.messages_frame(pd.DataFrame({"phone": ["1"]}))


def test_outputs_report_each_message_with_pending_and_failed_numbers():
    messages = pd.DataFrame(
        {"message_id": [1, 2, 3, 4], "destination_number": ["a", None, "c", "d"]}
    )
    statuses = {1: "DELIVERED", 2: "FAILED", 3: "DISPATCHED"}
    tracker = delivery.DeliveryTracker(messages["message_id"])
    delivery.run_round(tracker.round(), FakeHistory(statuses))
    assert delivery.delivery_frame(messages, tracker.rows)["fragments"].tolist()[2] is pd.NA
    frame = delivery.delivery_frame(messages, tracker.seen())
    assert list(frame.columns) == delivery.DELIVERY_COLUMNS
    assert frame["delivery_status"].tolist() == ["DELIVERED", "FAILED", "pending", "pending"]
    assert frame["destination_number"].tolist() == ["a", "442", "c", "d"], "from the history"

    failed = delivery.failed_numbers(frame)
    assert list(failed.columns) == FAILED_COLUMNS
    assert failed.to_dict("records") == [
        {
            "destination_number": "442",
            "input_number": "442",
            "error_code": None,
            "error_description": "FAILED: absent subscriber",
            "stage": "delivery",
        }
    ]
    summary = delivery.summarise(frame, 1.23456)
    assert tuple(summary) == delivery.SUMMARY_KEYS
    assert summary["delivered"] == 1 and summary["failed"] == 1 and summary["pending"] == 2
    assert frame["fragments"].tolist()[2] == 2, "what the history showed of a pending one"
    assert summary["fragments"] == 6 and summary["cost"] == pytest.approx(0.195)
    assert delivery.undelivered_ratio(summary) == 0.75


def test_id_encoding_is_exact_and_small_for_a_campaign():
    ids = list(range(1_000_001, 2_000_001))
    encoded = delivery.encode_ids(reversed(ids))
    assert len(encoded) < 20_000
    assert delivery.decode_ids(encoded) == ids
    gappy = [3, 10, 11, 9_000_000_000]
    assert delivery.decode_ids(delivery.encode_ids(gappy + [10])) == gappy
    assert delivery.decode_ids(delivery.encode_ids([])) == []


def test_a_round_applies_each_answer_as_it_comes_so_a_failed_call_keeps_earlier_progress():
    statuses = dict.fromkeys(range(1, 2001), "DELIVERED")
    history = FakeHistory(statuses)
    tracker = delivery.DeliveryTracker(statuses)

    def second_call_fails(**params):
        if history.calls:
            raise ConnectionError("the network went away")
        return history(**params)

    with pytest.raises(ConnectionError):
        delivery.run_round(tracker.round(), second_call_fails)
    assert tracker.open == set(range(1001, 2001)), "the first answer's 1,000 are final"
    assert delivery.run_round(tracker.round(), history) == 1000 and tracker.done


def test_a_concurrent_round_finds_the_same_with_calls_in_flight_together():
    import threading
    import time

    statuses = {i: ("FAILED" if i % 10 == 0 else "DELIVERED") for i in range(1, 4501)}
    history = FakeHistory(statuses, page_cap=700)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def slow(**params):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        try:
            return history(**params)
        finally:
            with lock:
                in_flight[0] -= 1

    tracker = delivery.DeliveryTracker(statuses)
    assert delivery.run_round_concurrently(tracker, slow, concurrency=4) == 4500
    assert tracker.done and tracker.counts == {"FAILED": 450, "DELIVERED": 4050}
    assert tracker.calls == len(history.calls) == 9 and tracker.rounds == 1  # 4 x 2 pages + 1
    assert peak[0] == 4


def test_a_concurrent_round_raises_the_first_error():
    tracker = delivery.DeliveryTracker(range(1, 5001))

    def broken(**params):
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        delivery.run_round_concurrently(tracker, broken, concurrency=3)
    assert len(tracker.open) == 5000
