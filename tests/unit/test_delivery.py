"""What followed messages came to (sms/delivery.py: statuses, the ids' encoding) and the
report's rows (sms/delivery_rows.py: what is followed, a row per message, outputs)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.delivery_rows import (
    Followed,
    StatusRows,
    failed_numbers,
    messages_frame,
)
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
    assert delivery.reported_status({"delivery_status": "SOMETHING_NEW"}) == "pending"
    assert delivery.reported_status({"delivery_status": "DISPATCHED"}) == "pending"
    assert delivery.reported_status({"delivery_status": 6}) == "FAILED"
    assert delivery.message_id_of({"delivery_status": "DELIVERED"}) == delivery.NO_ID


def test_the_follower_and_the_statuses_load_without_pandas():
    """The triggerer loads them (in a thread, but the GIL is shared with its event loop):
    pandas alone takes seconds to import on a busy machine."""
    code = "import sys; import airflow_provider_voxsms.sms.follow; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_messages_from_frames_lists_of_frames_and_plain_ids():
    frame = pd.DataFrame({"destination_number": ["4471", "4472"], "message_id": [11, 12]})
    assert messages_frame(frame)["message_id"].tolist() == [11, 12]
    mapped = messages_frame([frame, frame.assign(message_id=[13, 12])])
    assert mapped["message_id"].tolist() == [11, 12, 13]
    plain = messages_frame([5, "6", 5])
    assert plain["message_id"].tolist() == [5, 6]
    assert plain["destination_number"].isna().all()
    assert messages_frame(None).empty
    with pytest.raises(ValueError, match="message_id"):
        messages_frame(pd.DataFrame({"phone": ["1"]}))


def test_followed_is_built_block_by_block_sorted_and_unique_with_each_number():
    blocks = [
        [(30, "4430"), (10, "4410"), (None, "44"), (20, None)],
        [(10, "4499"), (40, "4440")],  # 10 again: its first number stays
    ]
    followed = Followed.from_blocks(iter(blocks))
    assert followed.ids.tolist() == [10, 20, 30, 40] and followed.ids.dtype == np.int64
    assert followed.numbers_of(np.array([40, 20, 10, 99])) == ["4440", None, "4410", None]
    assert followed.nbytes == 4 * 8 + 4 * 4, "8 bytes an id, the numbers' width each"
    assert len(Followed.from_blocks([])) == 0
    from_xcom = Followed.from_messages(
        [{"message_id": 7, "destination_number": "447"}, {"message_id": 5}]
    )
    assert from_xcom.ids.tolist() == [5, 7] and from_xcom.numbers_of(np.array([7, 5])) == [
        "447",
        None,
    ]


def test_outputs_report_each_message_with_pending_and_failed_numbers():
    messages = pd.DataFrame(
        {"message_id": [1, 2, 3, 4], "destination_number": ["a", None, "c", "d"]}
    )
    statuses = {1: "DELIVERED", 2: "FAILED", 3: "DISPATCHED"}
    followed = Followed.from_messages(messages)
    blocks: list[pd.DataFrame] = []
    rows = StatusRows(followed, write=blocks.append, keep=True, block_rows=2)
    follower = DeliveryFollower(None, OpenIds(followed.ids), on_done=rows.add)
    answer = FakeHistory(statuses)(message_id=[1, 2, 3, 4], count=1000, offset=0)
    assert follower.apply(answer["result"]) == 2
    assert follower.apply(answer["result"], last=True) == 0, "3 is handed on as pending"
    rows.add_unseen(follower.open.open_ids())
    rows.close()
    assert [len(block) for block in blocks] == [2, 2], "written a block at a time"
    frame = rows.frame()
    assert list(frame.columns) == delivery.DELIVERY_COLUMNS
    assert frame["delivery_status"].tolist() == ["DELIVERED", "FAILED", "pending", "pending"]
    assert frame["destination_number"].tolist() == ["a", "442", "c", "d"], "from the history"
    assert frame["fragments"].tolist()[3] is pd.NA, "4 was never shown"

    failed = failed_numbers(frame)
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
    summary = rows.summary(1.23456)
    assert tuple(summary) == delivery.SUMMARY_KEYS and summary["duration_s"] == 1.235
    assert summary["delivered"] == 1 and summary["failed"] == 1 and summary["pending"] == 2
    assert frame["fragments"].tolist()[2] == 2, "what the history showed of a pending one"
    assert summary["fragments"] == 6 and summary["cost"] == pytest.approx(0.195)
    assert delivery.undelivered_ratio(summary) == 0.75 and rows.undelivered == 1


def test_rows_only_written_are_not_kept():
    followed = Followed.from_messages(list(range(1, 26)))
    written: list[pd.DataFrame] = []
    rows = StatusRows(followed, write=written.append, block_rows=10)
    rows.add_unseen(followed.ids)
    rows.close()
    assert [len(block) for block in written] == [10, 10, 5] and rows.rows == 25
    assert rows.frame().empty and rows.summary(0)["pending"] == 25


def test_id_encoding_is_exact_and_small_for_a_campaign():
    ids = list(range(1_000_001, 2_000_001))
    encoded = delivery.encode_ids(reversed(ids))
    assert len(encoded) < 20_000
    assert delivery.decode_ids(encoded) == ids
    gappy = [3, 10, 11, 9_000_000_000]
    assert delivery.decode_ids(delivery.encode_ids(gappy + [10])) == gappy
    assert delivery.decode_ids(delivery.encode_ids([])) == []
    # Made a piece of 65,536 ids at a time: the pieces join exactly.
    gapped = np.cumsum(np.random.default_rng(3).integers(1, 11, size=200_000)) + 10**9
    assert np.array_equal(delivery.decode_id_array(delivery.encode_ids(gapped)), gapped)


def test_ids_decode_to_an_array_piece_by_piece():
    ids = [5, 17, 18, 19, 1_000, 9_000_000_000, 9_000_000_001]
    encoded = delivery.encode_ids(ids)
    for piece in (1, 2, 3, 1 << 18):
        decoded = delivery.decode_id_array(encoded, piece=piece)
        assert decoded.dtype == "int64" and decoded.tolist() == ids
    assert delivery.decode_id_array("").tolist() == []
    assert delivery.sorted_ids([3, 1, 3, 2]).tolist() == [1, 2, 3]
