"""reconcile(): which history rows may stand for a number an earlier try left in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from airflow_provider_voxsms.ledger import text_hash
from airflow_provider_voxsms.sms.resume import reconcile

CLAIMED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TX = text_hash("hello")


class FakeHistoryHook:
    def __init__(self, rows):
        self.rows, self.queries = rows, []

    def a2p_get_sms_history(self, **filters):
        self.queries.append(filters)
        return {"result": self.rows if filters["offset"] == 0 else []}


def row(message_id: int, number: str, at: datetime, text: str | None = None) -> dict:
    found = {"message_id": message_id, "destination_number": number}
    found["processing_date"] = at.strftime("%Y-%m-%d %H:%M:%S")
    return found | ({"text": text} if text else {})


def pending(*numbers: str) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples([(n, TX) for n in numbers])
    return pd.DataFrame({"claimed_at": [pd.Timestamp(CLAIMED)] * len(numbers)}, index=index)


def test_only_messages_processed_around_the_claim_count():
    hook = FakeHistoryHook(
        [
            row(1, "447400000001", CLAIMED + timedelta(seconds=3)),
            row(2, "447400000002", CLAIMED + timedelta(days=1)),  # tomorrow's campaign
            row(3, "447400000003", CLAIMED - timedelta(hours=1)),  # yesterday's
            row(4, "447400000004", CLAIMED, text="another text"),
        ]
    )
    numbers = ("447400000001", "447400000002", "447400000003", "447400000004")
    found = reconcile(hook, pending(*numbers), "VoxDemo", texts={TX: "hello"})
    assert found == {("447400000001", TX): 1}
    (query,) = hook.queries
    assert query["to_date"] <= CLAIMED + timedelta(minutes=11), "the history window is bounded"


def test_one_message_reconciles_one_claim():
    hook = FakeHistoryHook([row(7, "447400000001", CLAIMED)])
    twice = pending("447400000001")
    assert reconcile(hook, twice, "VoxDemo", texts={TX: "hello"}) == {("447400000001", TX): 7}
