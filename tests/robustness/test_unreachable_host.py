"""A Host that never answers fails in seconds with one error naming it, not after minutes.

Real sockets on 127.0.0.1: a port nobody listens on (connections refused) and a listener that
accepts connections and never answers (over http the request is sent and the answer never
comes; over https the TLS handshake never completes). The operator runs with the hook's default
(``first_contact_s=15``), the hook's own tests with a bound of 3 s (the same code, sooner); the
elapsed-time bounds are generous guards, not measurements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_voxsms.errors import VoximplantTransportError
from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook, VoximplantHook
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

GUARD_S = 60.0  # before the bound, a closed port took ~55 s and a silent host many minutes
BOUND_S = 3.0  # first_contact_s of the hooks the tests make themselves
NUMBERS = [f"4474433322{i:02d}" for i in range(10, 60)]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound once, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def host_url(request, scheme: str = "http") -> str:
    port = request.getfixturevalue(f"{request.param}_port")
    return f"{scheme}://127.0.0.1:{port}/platform_api"


def use_host(monkeypatch, credentials_json: str, host: str) -> None:
    conn = {"conn_type": "voximplant", "host": host, "password": credentials_json}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))


def backoff_lines(caplog, capsys) -> list[str]:
    """Back-off warnings however Airflow routes the hook's log (stdlib records or stdout)."""
    out = capsys.readouterr()
    lines = [r.getMessage() for r in caplog.records] + (out.out + out.err).splitlines()
    return [line for line in lines if "back-off" in line]


def assert_one_clear_error(error: BaseException, host: str) -> None:
    message = str(error)
    assert host in message, message
    assert "check the connection's Host" in message, message
    assert error.__cause__ is None


@pytest.fixture(params=["closed", "silent"])
def unreachable(request) -> str:
    return host_url(request)


def test_the_hook_fails_within_its_bound(
    monkeypatch, credentials_json, unreachable, caplog, capsys
):
    caplog.set_level(logging.WARNING)
    use_host(monkeypatch, credentials_json, unreachable)
    hook = VoximplantHook(first_contact_s=BOUND_S)
    started = time.monotonic()
    with pytest.raises(VoximplantTransportError) as info:
        hook.a2p_send_sms("VoxDemo", NUMBERS[:2], "hi")
    assert time.monotonic() - started < GUARD_S
    assert_one_clear_error(info.value, unreachable)
    assert len(backoff_lines(caplog, capsys)) <= 6
    # A call right after fails at once with the same words, and sends nothing.
    started = time.monotonic()
    with pytest.raises(VoximplantTransportError) as again:
        hook.a2p_send_sms("VoxDemo", NUMBERS[2:4], "hi")
    assert time.monotonic() - started < 5.0  # no attempt of its own
    assert again.value.maybe_processed is False
    assert_one_clear_error(again.value, unreachable)


def test_a_tls_handshake_that_never_completes(monkeypatch, credentials_json, silent_port):
    host = f"https://127.0.0.1:{silent_port}/platform_api"
    use_host(monkeypatch, credentials_json, host)
    started = time.monotonic()
    ok, message = VoximplantHook(first_contact_s=BOUND_S).test_connection()
    assert time.monotonic() - started < GUARD_S
    assert ok is False and host in message and "check the connection's Host" in message


@pytest.mark.parametrize("port", ["closed", "silent"])
def test_concurrent_async_calls_fail_once(monkeypatch, credentials_json, port, request):
    """Eight calls at once: one tries (for first_contact_s), the others wait for it
    and fail with its error without a request of their own."""
    host = f"http://127.0.0.1:{request.getfixturevalue(f'{port}_port')}/platform_api"
    use_host(monkeypatch, credentials_json, host)

    async def calls() -> list[BaseException]:
        async with VoximplantAsyncHook(first_contact_s=BOUND_S) as hook:
            return await asyncio.gather(
                *(hook.a2p_get_sms_history(count=1) for _ in range(8)), return_exceptions=True
            )

    started = time.monotonic()
    errors = asyncio.run(calls())
    assert time.monotonic() - started < BOUND_S + 10  # one bound, not eight
    assert all(isinstance(error, VoximplantTransportError) for error in errors), errors
    for error in errors:
        assert_one_clear_error(error, host)


def test_the_operator_stops_with_one_error(
    monkeypatch, credentials_json, unreachable, caplog, capsys
):
    """50 numbers in 25 requests, 16 at once: one error, a handful of warnings, and nothing
    reported as sent (over the silent host only the first request's numbers are unknown)."""
    caplog.set_level(logging.WARNING)
    use_host(monkeypatch, credentials_json, unreachable)
    op = A2PSendSmsOperator(
        task_id="send", recipients=NUMBERS, text="hi", src_number="VoxDemo", batch_size=2
    )
    pushed = {}
    ti = type("TI", (), {"xcom_push": lambda self, key, value: pushed.__setitem__(key, value)})()
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        op.execute({"ti": ti})
    assert time.monotonic() - started < GUARD_S
    assert unreachable in str(info.value) and "check the connection's Host" in str(info.value)
    assert len(backoff_lines(caplog, capsys)) <= 6
    assert pushed["accepted_numbers"].empty
    assert len(pushed["unknown_numbers"]) <= 2  # the one request in flight, at most
