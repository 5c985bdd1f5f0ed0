"""A bounded storm of malformed requests; afterwards the emulator still serves a valid one."""

from __future__ import annotations

import random

import requests

SENDER = "447443332211"


def test_malformed_requests_never_crash_the_emulator(api):
    rng = random.Random(1234)
    base, origin = api.server.base_url, api.server.origin
    good = api.headers()
    many = ";".join(f"44744{i:07d}" for i in range(101))
    cases = [
        lambda: requests.post(base, data={"cmd": "A2PSendSms"}, headers={"Authorization": "x"}),
        lambda: requests.post(base, headers={"Authorization": "Bearer " + "A" * 5000}),
        lambda: requests.post(base, headers={"Authorization": "Bearer a.b.c"}),
        lambda: requests.post(
            base, data=bytes(rng.randrange(256) for _ in range(300)), headers=good
        ),
        lambda: requests.post(base, data=b"cmd=A2PSendSms&text=%ff%fe", headers=good),
        lambda: requests.post(
            base,
            data=b"\xff\xfe\x00garbage",
            headers={**good, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        lambda: requests.post(base, json={"cmd": "GetAccountInfo"}, headers=good),
        lambda: requests.post(base, data="a=" + "x" * 1_100_000, headers=good),
        lambda: requests.post(base, data="&".join(f"k{i}=v" for i in range(1500)), headers=good),
        lambda: requests.put(base + "/A2PSendSms", headers=good),
        lambda: requests.delete(base, headers=good),
        lambda: requests.patch(f"{origin}/_emulator/faults", json={}),
        lambda: requests.get(f"{origin}/nowhere/../platform_api"),
        lambda: requests.post(base + "/A2PSendSms/extra/segments", headers=good),
        lambda: requests.post(
            base,
            data={"cmd": "A2PSendSms", "src_number": SENDER, "dst_numbers": many, "text": "x"},
            headers=good,
        ),
        lambda: requests.post(
            base,
            data={"cmd": "A2PSendSms", "src_number": SENDER, "dst_numbers": ";;;", "text": "x"},
            headers=good,
        ),
        lambda: requests.post(
            base,
            data={"cmd": "A2PGetSmsHistory", "count": "1e9", "offset": "99999999999999999999"},
            headers=good,
        ),
        lambda: requests.post(
            base, data={"cmd": "A2PGetSmsHistory", "message_id": "1;" * 600}, headers=good
        ),
        lambda: requests.post(base, data={"cmd": "GetAccountInfo", "bogus": "\x00"}, headers=good),
        lambda: requests.post(base + "/%00", headers=good),
    ]
    statuses = []
    for _ in range(120):
        try:
            r = rng.choice(cases)()
        except requests.ConnectionError:  # e.g. the server answers before an oversize upload ends
            continue
        statuses.append(r.status_code)
        body = r.json()
        assert "error" in body or "result" in body, body
    assert 500 not in statuses
    assert "500" not in api.introspect("stats")["api_errors"]
    r = api.call("A2PSendSms", src_number=SENDER, dst_numbers="447443332212", text="still here")
    assert r.json()["result"][0]["destination_number"] == "447443332212"
