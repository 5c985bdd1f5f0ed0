"""find_in_history(): which history rows stand for open numbers, and how few calls find them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_provider_voxsms.sms import history as reader
from airflow_provider_voxsms.sms import settle
from airflow_provider_voxsms.sms.settle import OpenNumber, find_in_history

STARTED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = STARTED + timedelta(minutes=3)


class FakeHistory:
    """A2PGetSmsHistory over ``rows``: the filters the emulator and the API apply, paged."""

    def __init__(self, rows):
        self.rows, self.queries = rows, []

    def a2p_get_sms_history(self, **filters):
        self.queries.append(filters)
        rows = [r for r in self.rows if _matches(r, filters)]
        page = rows[filters["offset"] : filters["offset"] + filters["count"]]
        return {"result": page, "total_count": len(rows)}


def _matches(row, filters) -> bool:
    at = settle.processed_at(row)
    ids = filters.get("message_id")
    return (
        (ids is None or row["message_id"] in ids)
        and filters.get("source_number", row["source_number"]) == row["source_number"]
        and filters.get("destination_number", row["destination_number"])
        == row["destination_number"]
        and ("from_date" not in filters or filters["from_date"] <= at <= filters["to_date"])
    )


def row(message_id, number, at, text=None, source="VoxDemo") -> dict:
    found = {"message_id": message_id, "destination_number": number, "source_number": source}
    found["processing_date"] = at.strftime("%Y-%m-%d %H:%M:%S")
    return found | ({"text": text} if text else {})


def open_number(number, text="hello", started=STARTED, message_id=None) -> OpenNumber:
    since = started.timestamp()
    return OpenNumber(number, text, since, since, "test", message_id)


def look_up(history, items, taken=None) -> dict[int, int]:
    """{position: message id} of the rows found."""
    found = find_in_history(
        history, items, src_number="VoxDemo", until=NOW, taken=set() if taken is None else taken
    )
    return {i: int(row["message_id"]) for i, row in found.items()}


def test_only_messages_processed_around_the_request_count():
    history = FakeHistory(
        [
            row(1, "447400000001", STARTED + timedelta(seconds=3)),
            row(2, "447400000002", STARTED + timedelta(days=1)),  # tomorrow's campaign
            row(3, "447400000003", STARTED - timedelta(hours=1)),  # yesterday's
            row(4, "447400000004", STARTED, text="another text"),
            row(5, "447400000005", STARTED, source="OtherSender"),
        ]
    )
    numbers = [f"44740000000{i}" for i in range(1, 6)]
    assert look_up(history, [open_number(n) for n in numbers]) == {0: 1}
    assert all(q["to_date"] <= NOW for q in history.queries), "the window ends now"


def test_one_message_settles_one_open_number():
    """Two open requests of one number (two texts, bodies not stored), one history row: only
    one of them arrived, so only one may be credited."""
    history = FakeHistory([row(7, "447400000001", STARTED)])
    items = [open_number("447400000001", "first"), open_number("447400000001", "second")]
    assert look_up(history, items) == {0: 7}


def test_a_message_already_credited_to_the_campaign_is_not_taken_again():
    history = FakeHistory([row(7, "447400000001", STARTED), row(8, "447400000001", STARTED)])
    taken = {7}
    assert look_up(history, [open_number("447400000001")], taken) == {0: 8}
    assert taken == {7, 8}


def test_known_message_ids_are_looked_up_by_id():
    history = FakeHistory([row(7, "447400000001", STARTED)])
    items = [open_number("447400000001", message_id=7), open_number("447400000002", message_id=9)]
    assert look_up(history, items) == {0: 7}
    assert all("message_id" in q for q in history.queries)


def test_a_busy_window_is_read_destination_by_destination_not_cut_short(monkeypatch):
    """More history rows in the window than pages worth reading: query each open number."""
    monkeypatch.setattr(reader, "HISTORY_PAGE", 10)
    rows = [row(i, f"4475{i:08d}", STARTED) for i in range(1, 500)]
    history = FakeHistory([*rows, row(1000, "447400000001", STARTED + timedelta(seconds=1))])
    found = look_up(history, [open_number("447400000001"), open_number("447500000003")])
    assert found == {0: 1000, 1: 3}
    assert len(history.queries) == 3, "one window probe, then one query per destination"
    assert history.queries[1]["destination_number"] == "447400000001"


def test_a_quiet_window_is_read_whole_in_pages(monkeypatch):
    monkeypatch.setattr(reader, "HISTORY_PAGE", 10)
    rows = [row(i, f"4475{i:08d}", STARTED) for i in range(1, 26)]
    items = [open_number(f"4475{i:08d}") for i in range(1, 26)]
    history = FakeHistory(rows)
    assert look_up(history, items) == {i - 1: i for i in range(1, 26)}
    assert [q["offset"] for q in history.queries] == [0, 10, 20], "three pages, no per-number"
