"""What followed messages came to (sms/delivery.py): statuses, rows, outputs, the ids' encoding."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.follow import DeliveryFollower, OpenIds
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
    follower = DeliveryFollower(None, OpenIds(messages["message_id"]), keep_rows=True)
    answer = FakeHistory(statuses)(message_id=[1, 2, 3, 4], count=1000, offset=0)
    assert follower.apply(answer["result"]) == 2
    assert delivery.delivery_frame(messages, follower.rows)["fragments"].tolist()[2] is pd.NA
    frame = delivery.delivery_frame(messages, follower.seen())
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


def test_ids_decode_to_an_array_piece_by_piece():
    ids = [5, 17, 18, 19, 1_000, 9_000_000_000, 9_000_000_001]
    encoded = delivery.encode_ids(ids)
    for piece in (1, 2, 3, 1 << 18):
        decoded = delivery.decode_id_array(encoded, piece=piece)
        assert decoded.dtype == "int64" and decoded.tolist() == ids
    assert delivery.decode_id_array("").tolist() == []
    assert delivery.sorted_ids([3, 1, 3, 2]).tolist() == [1, 2, 3]
