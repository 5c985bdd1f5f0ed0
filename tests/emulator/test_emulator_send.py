"""A2PSendSms: both request styles, argument limits, per-number failures, fragments_count."""

from __future__ import annotations

import pytest

from airflow_provider_voxsms.sms.segments import count_segments

SENDER = "447443332211"  # one of the emulator's default sender ids
NUMBERS = [f"4474433322{i:02d}" for i in range(12, 20)]


@pytest.mark.parametrize("style", ["cmd", "path", "path-form"])
def test_both_request_styles_send(api, style):
    r = api.call(
        "A2PSendSms", style=style, src_number=SENDER, dst_numbers=";".join(NUMBERS[:3]), text="Hi"
    )
    body = r.json()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert [x["destination_number"] for x in body["result"]] == NUMBERS[:3]
    assert body["failed"] == [] and body["fragments_count"] == 1
    ids = [x["message_id"] for x in body["result"]]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_message_ids_increase_across_requests_and_are_stored(api):
    first = api.send(NUMBERS[:2])["result"]
    second = api.send(NUMBERS[2:4])["result"]
    ids = [x["message_id"] for x in first + second]
    assert ids == sorted(ids) and len(set(ids)) == 4
    stored = api.server.state.messages
    assert [m.message_id for m in stored] == ids
    assert {m.source_number for m in stored} == {SENDER}


@pytest.mark.parametrize("missing", ["src_number", "dst_numbers", "text"])
def test_missing_parameter_is_101_naming_it(api, missing):
    params = {"src_number": SENDER, "dst_numbers": NUMBERS[0], "text": "x"}
    del params[missing]
    err = api.error("A2PSendSms", **params)
    assert err["code"] == 101 and missing in err["msg"]


def test_100_numbers_pass_101_fail(api):
    numbers = [f"4474400{i:05d}" for i in range(101)]
    assert len(api.send(numbers[:100])["result"]) == 100
    err = api.error("A2PSendSms", src_number=SENDER, dst_numbers=";".join(numbers), text="x")
    assert err["code"] == 101
    assert api.server.state.accepted_count == 100


@pytest.mark.parametrize(("length", "code"), [(1600, None), (1601, 508), (0, 508)])
def test_text_length(api, length, code):
    params = {"src_number": SENDER, "dst_numbers": NUMBERS[0], "text": "a" * length}
    if code is None:
        assert api.ok("A2PSendSms", **params)["fragments_count"] == 11
    else:
        assert api.error("A2PSendSms", **params)["code"] == code


def test_unknown_sender_is_507_and_senders_are_configurable(api):
    params = {"src_number": "Unknown", "dst_numbers": NUMBERS[0], "text": "x"}
    assert api.error("A2PSendSms", **params)["code"] == 507
    api.server.state.configure(sender_ids=frozenset({"Unknown"}))
    assert api.ok("A2PSendSms", **params)["result"]


def test_507_names_the_sender_ids_it_accepts(api):
    params = {"src_number": "MyBrand", "dst_numbers": NUMBERS[0], "text": "x"}
    assert api.error("A2PSendSms", **params) == {
        "code": 507,
        "msg": "Invalid src_number 'MyBrand': this emulator accepts 447443332211, VoxDemo "
        "(add one with --sender-id)",
    }
    api.server.state.configure(sender_ids={"Shop", "Alerts"})
    assert "accepts Alerts, Shop (" in api.error("A2PSendSms", **params)["msg"]


def test_per_number_failures(api):
    api.server.state.set_faults(blocked_numbers={NUMBERS[1]})
    dst = [NUMBERS[0], "+447443332299", "1234567", "1234567890123456", "44abc4433322", NUMBERS[1]]
    body = api.send(";".join(dst) + ";;")
    assert [x["destination_number"] for x in body["result"]] == [NUMBERS[0]]
    failed = {x["destination_number"]: x["error_code"] for x in body["failed"]}
    assert failed == {
        "+447443332299": 506,
        "1234567": 506,
        "1234567890123456": 506,
        "44abc4433322": 506,
        NUMBERS[1]: 509,
    }
    assert all(x["error_description"] for x in body["failed"])


def test_booleans_in_every_spelling(api):
    for value in ("True", "true", "1", "False", "false", "0"):
        api.send(NUMBERS[:1], store_body=value)
    stored = [m.store_body for m in api.server.state.messages]
    assert stored == [True, True, True, False, False, False]
    assert (
        api.error(
            "A2PSendSms", src_number=SENDER, dst_numbers=NUMBERS[0], text="x", store_body="maybe"
        )["code"]
        == 101
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("я" * 70, 1),
        ("я" * 71, 2),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("a" * 159 + "{", 2),
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
        ("a" * 159 + "😀", 3),  # one emoji makes the whole text UCS-2
    ],
)
def test_fragments_count(api, text, fragments):
    assert count_segments(text).count == fragments
    assert api.send(NUMBERS[:1], text=text)["fragments_count"] == fragments
    assert api.server.state.messages[-1].fragments == fragments


def test_unknown_method_and_unknown_params(api):
    assert api.error("A2PSendFax")["code"] == 101
    assert api.call("", style="cmd").json()["error"]["code"] == 101
    body = api.send(NUMBERS[:1], surprise="yes")
    assert len(body["result"]) == 1


def test_get_is_accepted_like_the_query_string_style(api):
    params = {"src_number": SENDER, "dst_numbers": NUMBERS[0], "text": "x"}
    r = api.session.get(f"{api.server.base_url}/A2PSendSms", params=params, headers=api.headers())
    assert len(r.json()["result"]) == 1
