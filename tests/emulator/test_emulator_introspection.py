"""The /_emulator endpoints and the pytest fixtures."""

from __future__ import annotations

import json
import os

SENDER = "447443332211"


def test_messages_and_stats(api):
    token = api.headers()
    for _ in range(3):
        api.call(
            "A2PSendSms",
            src_number=SENDER,
            dst_numbers="447443332212;447443332213",
            text="x",
            headers=token,
        )
    api.call("GetAccountInfo", headers=api.headers(ttl=30))
    messages = api.introspect("messages")
    assert len(messages) == 6 and messages[0]["destination_number"] == "447443332212"
    stats = api.introspect("stats")
    assert stats["requests"] == 4
    assert stats["per_method"] == {"A2PSendSms": 3, "GetAccountInfo": 1}
    assert stats["distinct_tokens"] == 2
    assert stats["max_batch_size"] == 2 and stats["accepted"] == 6
    assert stats["in_flight"] == 0 and stats["max_in_flight"] >= 1
    assert api.introspect("health") == {"ok": True}
    assert api.introspect("faults")["latency_ms"] == 0


def test_reset_endpoint(api):
    api.call("A2PSendSms", src_number=SENDER, dst_numbers="447443332212", text="x")
    assert api.session.post(f"{api.server.origin}/_emulator/reset").json() == {"ok": True}
    assert api.introspect("messages") == []
    assert api.introspect("stats")["requests"] == 0


def test_each_test_starts_clean(voximplant_emulator):
    assert voximplant_emulator.state.messages == []
    assert voximplant_emulator.state.stats.requests == 0


def test_voximplant_conn_sets_the_airflow_connection(voximplant_conn):
    conn = json.loads(os.environ["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"])
    assert conn["conn_type"] == "voximplant"
    assert conn["host"] == voximplant_conn.base_url
    creds = json.loads(conn["password"])
    assert set(creds) == {"account_email", "account_id", "key_id", "private_key"}
    assert creds["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
