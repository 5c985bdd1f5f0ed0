"""A2PGetSmsHistory and GetAccountInfo."""

from __future__ import annotations

import time

import pytest

from airflow_provider_voxsms.emulator.params import format_date

SENDER = "447443332211"  # one of the emulator's default sender ids
NUMBERS = [f"4474433322{i:02d}" for i in range(12, 20)]


@pytest.fixture
def sent(api):
    """Five messages: three with stored text, two without; returns their ids."""
    a = api.send(NUMBERS[:3], text="stored", store_body="True")["result"]
    b = api.send(NUMBERS[3:5], text="secret")["result"]
    return [x["message_id"] for x in a + b]


def test_history_rows(api, sent):
    body = api.ok("A2PGetSmsHistory")
    assert body["total_count"] == 5
    rows = body["result"]
    assert [r["message_id"] for r in rows] == sent
    first = rows[0]
    assert first["source_number"] == SENDER and first["destination_number"] == NUMBERS[0]
    assert first["fragments"] == 1 and first["delivery_status"] == "DELIVERED"
    assert first["text"] == "stored" and "text" not in rows[4]
    assert time.strptime(first["processing_date"], "%Y-%m-%d %H:%M:%S")
    for key in ("cost", "status_id", "error_message", "transaction_id"):
        assert key in first


def test_history_filters_and_paging(api, sent):
    def ids(**params):
        body = api.ok("A2PGetSmsHistory", **params)
        return [r["message_id"] for r in body["result"]], body["total_count"]

    assert ids(message_id=f"{sent[1]};{sent[4]};999") == ([sent[1], sent[4]], 2)
    assert ids(destination_number=NUMBERS[2]) == ([sent[2]], 1)
    assert ids(source_number="nobody") == ([], 0)
    assert ids(count=2, offset=1) == (sent[1:3], 5)
    assert ids(delivery_status=5)[1] == 5 and ids(delivery_status=6)[1] == 0
    now = time.time()
    assert ids(from_date=format_date(now - 60), to_date=format_date(now + 60))[1] == 5
    assert ids(from_date=format_date(now + 60))[1] == 0
    assert ids(to_date=format_date(now - 60))[1] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"count": "1001"},
        {"count": "x"},
        {"from_date": "yesterday"},
        {"message_id": "a;b"},
        {"output": "csv"},
        {"offset": "-1"},
    ],
)
def test_history_bad_arguments(api, params):
    assert api.error("A2PGetSmsHistory", **params)["code"] == 101


def test_account_info(api):
    body = api.ok("GetAccountInfo")
    info = body["result"]
    creds = api.server.state.credentials
    assert info["account_id"] == creds.account_id
    assert info["account_email"] == creds.account_email
    assert info["active"] is True and info["account_name"]
    assert body["api_address"] == info["api_address"] == api.server.base_url
