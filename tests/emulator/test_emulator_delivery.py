"""The emulator's delivery lifecycle: QUEUED -> DISPATCHED -> final, by rate and by last digit."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from airflow_provider_voxsms.emulator.delivery import status_at
from airflow_provider_voxsms.emulator.faults import Faults
from airflow_provider_voxsms.emulator.state import Message

NUMBERS = [f"4474433322{i:02d}" for i in range(10, 20)]  # last digits 0..9


@pytest.fixture
def clock(voximplant_emulator, monkeypatch):
    """The state's clock, shifted by ``shift[0]`` seconds (tokens keep the real clock)."""
    shift = [0.0]
    monkeypatch.setattr(voximplant_emulator.state, "clock", lambda: time.time() + shift[0])
    return shift


def statuses(api, **params) -> dict[int, tuple[str, str]]:
    rows = api.ok("A2PGetSmsHistory", **params)["result"]
    return {r["message_id"]: (r["delivery_status"], r["error_message"]) for r in rows}


def test_messages_go_queued_dispatched_then_final_by_last_digit(api, clock):
    api.server.state.set_faults(
        delivery_queued_s=10,
        delivery_dispatched_s=20,
        delivery_by_last_digit="3=FAILED,4=EXPIRED,5=REJECTED,6=ABORTED,7=UNKNOWN,9=NEVER",
    )
    ids = [m["message_id"] for m in api.send(NUMBERS)["result"]]
    assert {s for s, _ in statuses(api).values()} == {"QUEUED"}
    clock[0] = 15
    assert {s for s, _ in statuses(api).values()} == {"DISPATCHED"}
    clock[0] = 31
    final = statuses(api)
    by_digit = {NUMBERS[ids.index(i)][-1]: status for i, status in final.items()}
    assert by_digit["0"] == by_digit["8"] == ("DELIVERED", "")
    assert by_digit["3"] == ("FAILED", "Absent subscriber")
    assert [by_digit[d][0] for d in "4567"] == ["EXPIRED", "REJECTED", "ABORTED", "UNKNOWN"]
    clock[0] = 10**6
    assert statuses(api)[ids[9]] == ("DISPATCHED", ""), "NEVER stays DISPATCHED"


def test_history_filters_by_status_and_by_a_list_of_ids_and_pages(api):
    api.server.state.set_faults(delivery_by_last_digit="1=FAILED,2=FAILED")
    ids = [m["message_id"] for m in api.send(NUMBERS)["result"]]
    failed = api.ok("A2PGetSmsHistory", delivery_status=6)
    assert failed["total_count"] == 2 and {r["message_id"] for r in failed["result"]} == {
        ids[1],
        ids[2],
    }
    assert api.ok("A2PGetSmsHistory", delivery_status=5)["total_count"] == 8
    assert api.ok("A2PGetSmsHistory", delivery_status=1)["total_count"] == 0
    wanted = ";".join(str(i) for i in ids[:5])
    page = api.ok("A2PGetSmsHistory", message_id=wanted, delivery_status=5, count=2, offset=1)
    assert page["total_count"] == 3 and [r["message_id"] for r in page["result"]] == [
        ids[3],
        ids[4],
    ]


def test_rates_are_shares_of_messages_and_every_read_agrees():
    faults = Faults(delivery_failed_rate=0.2, delivery_never_final_rate=0.1, seed=7)

    def message(i):
        return Message(i, i, "s", "447443332210", "t", 2, 0.065, 0.0, False, 0.0)

    counts = Counter(status_at(message(i), faults, 1.0)[0] for i in range(20_000))
    assert counts.keys() == {"DELIVERED", "FAILED", "DISPATCHED"}
    assert abs(counts["FAILED"] / 20_000 - 0.2) < 0.02
    assert abs(counts["DISPATCHED"] / 20_000 - 0.1) < 0.02
    assert [status_at(message(5), faults, 1.0) for _ in range(3)].count(
        status_at(message(5), faults, 1.0)
    ) == 3


def test_default_is_delivered_at_once_and_cost_is_per_fragment(api):
    ids = [m["message_id"] for m in api.send(NUMBERS[:2], text="x" * 200)["result"]]
    rows = api.ok("A2PGetSmsHistory", message_id=";".join(map(str, ids)))["result"]
    assert {r["delivery_status"] for r in rows} == {"DELIVERED"}
    price = api.server.state.config.price_per_fragment
    assert {(r["fragments"], r["cost"]) for r in rows} == {(2, round(2 * price, 4))}


def test_bad_delivery_settings_are_refused(api):
    with pytest.raises(ValueError, match="exceed 1"):
        Faults(delivery_failed_rate=0.6, delivery_expired_rate=0.6)
    with pytest.raises(ValueError, match="digit=OUTCOME"):
        Faults(delivery_by_last_digit="x=FAILED")
    assert Faults(delivery_by_last_digit={"9": "never", "1": "failed"}).delivery_by_last_digit == (
        "1=FAILED,9=NEVER"
    )
    r = api.session.post(
        f"{api.server.origin}/_emulator/faults", json={"delivery_by_last_digit": "7=LOST"}
    )
    assert r.status_code == 400


def test_cli_flags_set_the_lifecycle():
    from airflow_provider_voxsms.emulator.__main__ import build_parser, faults_from_args

    args = build_parser().parse_args(
        [
            "--delivery-queued-s",
            "2",
            "--delivery-failed-rate",
            "0.1",
            "--delivery-by-last-digit",
            "9=NEVER",
        ]
    )
    faults = faults_from_args(args)
    assert (faults.delivery_queued_s, faults.delivery_failed_rate) == (2.0, 0.1)
    assert faults.delivery_by_last_digit == "9=NEVER"


def test_the_pytest_plugin_sets_the_lifecycle(api, voximplant_delivery):
    faults = voximplant_delivery(queued_s=60, by_last_digit="9=NEVER")
    assert (faults.delivery_queued_s, faults.delivery_by_last_digit) == (60, "9=NEVER")
    api.send(NUMBERS[:1])
    assert {s for s, _ in statuses(api).values()} == {"QUEUED"}
