"""VoximplantHook over real HTTP against the emulator: auth, token reuse, errors, retries, secrets."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_voxsms.errors import (
    ConfigurationError,
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.hooks.voximplant import VoximplantHook

NUMBERS = ["447443332212", "447443332213", "14155552671"]


@pytest.fixture
def hook(voximplant_conn) -> VoximplantHook:
    return VoximplantHook(backoff_initial_s=0.01, backoff_max_s=0.05)


def test_round_trip(hook, voximplant_conn):
    sent = hook.a2p_send_sms("447443332211", NUMBERS, "Test message")
    assert sorted(row["destination_number"] for row in sent.result) == sorted(NUMBERS)
    assert sent.failed == [] and sent.fragments_count == 1
    stored = voximplant_conn.state.messages_snapshot()
    assert sorted(m["destination_number"] for m in stored) == sorted(NUMBERS)
    assert {m["text"] for m in stored} == {"Test message"}


def test_one_token_serves_many_concurrent_calls(hook, voximplant_conn):
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: hook.a2p_send_sms("VoxDemo", [f"4474433322{i:02d}"], "hi"), range(40)
            )
        )
    hook.get_account_info()
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["requests"] == 41
    assert stats["distinct_tokens"] == 1


def test_per_number_failures_come_back_in_failed(hook, voximplant_conn):
    voximplant_conn.state.set_faults(blocked_numbers={"447443332213"})
    sent = hook.a2p_send_sms("VoxDemo", NUMBERS, "hi")
    assert [row["destination_number"] for row in sent.failed] == ["447443332213"]
    assert sent.failed[0]["error_code"] == 509
    assert len(sent.result) == 2


def test_api_errors_are_typed(hook):
    with pytest.raises(VoximplantApiError) as caught:
        hook.a2p_send_sms("not-our-sender", NUMBERS, "hi")
    assert caught.value.code == 507 and caught.value.is_fatal


def test_history_and_account_info(hook, voximplant_conn):
    sent = hook.a2p_send_sms("VoxDemo", NUMBERS, "history please", store_body=True)
    ids = [row["message_id"] for row in sent.result]
    now = datetime.now(UTC)
    history = hook.a2p_get_sms_history(
        message_id=ids, from_date=now - timedelta(minutes=5), to_date=now + timedelta(minutes=5)
    )
    assert history["total_count"] == 3
    assert sorted(row["message_id"] for row in history["result"]) == sorted(ids)
    info = hook.get_account_info()
    assert info["account_id"] == voximplant_conn.state.credentials.account_id
    ok, message = hook.test_connection()
    assert ok and str(info["account_id"]) in message


@pytest.mark.parametrize(
    "fault", ["http_429_rate", "http_503_rate", "error_340_rate", "error_416_rate"]
)
def test_throttling_storm_is_ridden_out(hook, voximplant_conn, fault):
    voximplant_conn.state.set_faults(**{fault: 0.5, "seed": 7, "retry_after_s": 0})
    for i in range(10):
        sent = hook.a2p_send_sms("VoxDemo", [f"4474433322{i:02d}"], "storm")
        assert len(sent.result) == 1
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["accepted"] == 10 and stats["duplicates"] == 0
    assert stats["requests"] > 10, "the storm did throttle some requests"


def test_processed_then_500_is_not_resent(hook, voximplant_conn):
    voximplant_conn.state.set_faults(process_then_500_rate=1.0)
    with pytest.raises(VoximplantHttpError, match="HTTP 500"):
        hook.a2p_send_sms("VoxDemo", NUMBERS, "ambiguous")
    assert voximplant_conn.state.stats_snapshot()["accepted"] == 3
    assert voximplant_conn.state.stats_snapshot()["requests"] == 1


def test_read_timeout_is_reported_as_maybe_processed(voximplant_conn):
    voximplant_conn.state.set_faults(slow_response_s=1.0)
    hook = VoximplantHook(read_timeout_s=0.2)
    with pytest.raises(VoximplantTransportError) as caught:
        hook.a2p_send_sms("VoxDemo", NUMBERS, "slow")
    assert caught.value.maybe_processed


def test_nothing_listening_is_a_clear_connection_error(monkeypatch, credentials_json):
    conn = {"conn_type": "voximplant", "host": "http://127.0.0.1:9/platform_api"}
    conn["password"] = credentials_json
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    hook = VoximplantHook(max_attempts=2, backoff_initial_s=0.01)
    with pytest.raises(VoximplantTransportError, match="could not connect") as caught:
        hook.a2p_send_sms("VoxDemo", NUMBERS, "hi")
    assert not caught.value.maybe_processed
    ok, message = hook.test_connection()
    assert not ok and "could not connect" in message


def test_wrong_key_is_rejected_by_the_server(monkeypatch, voximplant_emulator, credentials_json):
    conn = {"conn_type": "voximplant", "host": voximplant_emulator.base_url}
    conn["password"] = credentials_json  # a key the emulator does not know
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    ok, message = VoximplantHook().test_connection()
    assert not ok and "433" in message


def test_key_and_token_never_reach_the_logs(hook, voximplant_conn, caplog, capsys):
    voximplant_conn.state.set_faults(error_416_rate=0.5, seed=3, retry_after_s=0)
    with caplog.at_level(logging.DEBUG):
        for i in range(5):
            hook.a2p_send_sms("VoxDemo", [f"4474433322{i:02d}"], "secret check")
        with pytest.raises(VoximplantApiError):
            hook.a2p_send_sms("bad sender", ["447443332212"], "secret check")
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert "back-off" in everything, "the test saw the hook's log output"
    secrets = [hook.signer.token(), *hook.credentials.secret_fragments()]
    assert [s[:12] for s in secrets if s in everything] == []


def test_key_and_token_are_registered_with_the_log_masker(hook, voximplant_conn):
    from airflow.sdk.log import redact

    hook.get_account_info()
    token, key = hook.signer.token(), hook.credentials.private_key
    key_line = key.splitlines()[3]
    assert redact(f"token={token}") == "token=***"
    assert token not in redact({"headers": {"x": f"Bearer {token}"}})["headers"]["x"]
    assert key_line not in redact(f"a line of the key: {key_line}")


def test_https_with_the_ca_bundle_extra(voximplant_emulator_tls, monkeypatch):
    conn = json.loads(voximplant_emulator_tls.connection_json())
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    with pytest.raises(ConfigurationError, match="set the connection extra 'ca_bundle'"):
        VoximplantHook().a2p_send_sms("VoxDemo", NUMBERS, "tls")
    assert voximplant_emulator_tls.state.stats_snapshot()["requests"] == 0

    conn["extra"] = {"ca_bundle": str(voximplant_emulator_tls.cert_path)}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    sent = VoximplantHook().a2p_send_sms("VoxDemo", NUMBERS, "tls")
    assert len(sent.result) == 3
    assert voximplant_emulator_tls.base_url.startswith("https://")


# -- VoximplantAsyncHook over the same HTTP ---------------------------------------------------


def run_async(hook_args: dict | None, work):
    """``work(hook)`` with a fresh VoximplantAsyncHook, on a fresh event loop."""
    import asyncio

    from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook

    async def main():
        async with VoximplantAsyncHook(**(hook_args or {})) as hook:
            return await work(hook)

    return asyncio.run(main())


def test_async_round_trip(voximplant_conn):
    async def work(hook):
        sent = await hook.a2p_send_sms("VoxDemo", NUMBERS, "async hello")
        ids = [row["message_id"] for row in sent.result]
        history = await hook.a2p_get_sms_history(message_id=ids)
        return ids, history, await hook.get_account_info()

    ids, history, info = run_async(None, work)
    assert sorted(row["message_id"] for row in history["result"]) == sorted(ids)
    assert info["account_id"] == voximplant_conn.state.credentials.account_id
    assert voximplant_conn.state.stats_snapshot()["distinct_tokens"] == 1


def test_async_throttling_storm_is_ridden_out_with_calls_in_flight(voximplant_conn):
    import asyncio

    voximplant_conn.state.set_faults(http_429_rate=0.3, error_416_rate=0.1, seed=5, retry_after_s=0)

    async def work(hook):
        numbers = [f"4474433322{i:02d}" for i in range(20)]
        return await asyncio.gather(*(hook.a2p_send_sms("VoxDemo", [n], "storm") for n in numbers))

    sent = run_async({"max_attempts": 20, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}, work)
    assert all(len(answer.result) == 1 for answer in sent)
    stats = voximplant_conn.state.stats_snapshot()
    assert stats["accepted"] == 20 and stats["duplicates"] == 0 and stats["requests"] > 20


def test_async_https_with_the_ca_bundle_extra(voximplant_emulator_tls, monkeypatch):
    conn = json.loads(voximplant_emulator_tls.connection_json())
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))

    async def send(hook):
        return await hook.a2p_send_sms("VoxDemo", NUMBERS, "tls")

    with pytest.raises(ConfigurationError, match="set the connection extra 'ca_bundle'"):
        run_async(None, send)
    assert voximplant_emulator_tls.state.stats_snapshot()["requests"] == 0
    conn["extra"] = {"ca_bundle": str(voximplant_emulator_tls.cert_path)}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    assert len(run_async(None, send).result) == 3


def test_async_credentials_path_and_secrets_registered_with_the_masker(
    voximplant_emulator, monkeypatch, tmp_path
):
    from airflow.sdk.log import redact

    path = tmp_path / "credentials.json"
    path.write_text(voximplant_emulator.credentials_json)
    conn = {"conn_type": "voximplant", "host": voximplant_emulator.base_url}
    conn["extra"] = {"credentials_path": str(path)}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))

    async def work(hook):
        await hook.get_account_info()
        settings = await hook.check_config()
        return settings.signer.token(), settings.credentials.private_key

    token, key = run_async(None, work)
    assert redact(f"token={token}") == "token=***"
    assert key.splitlines()[3] not in redact(f"a line of the key: {key.splitlines()[3]}")
