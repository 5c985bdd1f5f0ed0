"""VoximplantAsyncHook in isolation: the blocking hook's request policy, over httpx.

The transport is an ``httpx.MockTransport`` answering from a script; the hook over real HTTP
against the emulator is in tests/integration/test_hook_emulator.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from urllib.parse import parse_qsl

import httpx
import pytest

from airflow_provider_voxsms.errors import (
    ConfigurationError,
    CredentialsError,
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.hooks import connection
from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook

BASE = "http://127.0.0.1:8025/platform_api"


class Script:
    """Answers each request with the next scripted answer (a Response, an exception, or a
    callable taking the request), recording what was sent and when."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[dict] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        self.calls.append(
            {
                "url": str(request.url),
                "data": form,
                "headers": request.headers,
                "at": time.monotonic(),
            }
        )
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = await answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(body=None, status=200, headers=None) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


@pytest.fixture
def make_hook(monkeypatch, credentials_json):
    def make(*answers, extra: dict | None = None, **hook_args):
        conn = {"conn_type": "voximplant", "host": BASE, "password": credentials_json}
        if extra:
            conn["extra"] = extra
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
        hook_args.setdefault("backoff_initial_s", 0.001)
        script = Script(*answers)
        return VoximplantAsyncHook(transport=httpx.MockTransport(script), **hook_args), script

    return make


def run(coroutine):
    return asyncio.run(coroutine)


async def closing(hook, coroutine):
    async with hook:
        return await coroutine


def test_call_sends_the_blocking_hooks_form_body(make_hook):
    hook, script = make_hook(ok({"result": 1}))
    answer = run(closing(hook, hook.call("A2PGetSmsHistory", message_id=[1, 2], count=None)))
    assert answer == {"result": 1}
    call = script.calls[0]
    assert call["url"] == f"{BASE}/A2PGetSmsHistory" and call["data"] == {"message_id": "1;2"}
    assert call["headers"]["authorization"].startswith("Bearer ey")
    assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_a2p_send_sms_and_history(make_hook):
    sent = {
        "result": [{"message_id": 7, "destination_number": "447443332212"}],
        "fragments_count": 1,
    }
    hook, script = make_hook(ok(sent), ok({"result": [], "total_count": 0}))

    async def both():
        async with hook:
            return await hook.a2p_send_sms("VoxDemo", ["447443332212"], "hi"), (
                await hook.a2p_get_sms_history(message_id=[7])
            )

    answer, history = run(both())
    assert answer.result == sent["result"] and answer.fragments_count == 1
    assert script.calls[0]["data"]["store_body"] == "false" and history["total_count"] == 0
    with pytest.raises(ValueError, match=r"1\.\.100 numbers"):
        run(hook.a2p_send_sms("1", [], "hi"))


@pytest.mark.parametrize(
    "throttled",
    [
        ok(status=429, headers={"Retry-After": "0"}),
        httpx.Response(503, text="<html>busy</html>"),
        ok({"error": {"code": 340, "msg": "Rate limit exceeded"}}),
        ok({"error": {"code": 416, "msg": "Repeat after 0 seconds"}}),
    ],
)
def test_throttling_is_retried_even_for_sends(make_hook, throttled):
    hook, script = make_hook(throttled, ok({"result": [], "fragments_count": 1}))
    assert run(closing(hook, hook.a2p_send_sms("1", ["447443332212"], "hi"))).fragments_count == 1
    assert len(script.calls) == 2


def test_a_throttling_answer_pauses_every_call_of_the_hook(make_hook):
    """One call is told to wait 0.3 s; a second call, started after that answer, waits too."""
    throttled = asyncio.Event()

    async def first_answer(request):
        throttled.set()
        return ok(status=429, headers={"Retry-After": "0.3"})

    hook, script = make_hook(first_answer, ok({"result": {}}), ok({"result": {}}))

    async def two_calls():
        async with hook:
            one = asyncio.ensure_future(hook.call("GetAccountInfo"))
            await throttled.wait()
            await asyncio.sleep(0.01)
            started = time.monotonic()
            await hook.call("GetAccountInfo")
            await one
            return started

    started = run(two_calls())
    second_post = min(c["at"] for c in script.calls[1:])
    assert second_post - started >= 0.25, "the other call waited out the pause"


def test_a_send_that_may_have_been_processed_is_never_resent_but_a_read_is(make_hook):
    hook, script = make_hook(httpx.ReadTimeout("read timed out"), ok({}))  # then a probe
    with pytest.raises(VoximplantTransportError) as caught:
        run(closing(hook, hook.a2p_send_sms("1", ["447443332212"], "hi")))
    assert caught.value.maybe_processed and "sent no answer" not in str(caught.value)
    assert [call["url"].rsplit("/", 1)[1] for call in script.calls] == [
        "A2PSendSms",
        "GetAccountInfo",
    ], "sent once; the probe found the host answering"

    hook, script = make_hook(httpx.ReadTimeout("read timed out"), httpx.Response(500), ok({}))
    assert run(closing(hook, hook.a2p_get_sms_history(message_id=[1]))) == {}
    assert len(script.calls) == 3


def test_a_connection_never_opened_is_retried_then_named(make_hook):
    refused = httpx.ConnectError("Connection refused")
    hook, script = make_hook(refused, ok({"result": {}}))
    assert run(closing(hook, hook.call("A2PSendSms"))) == {"result": {}}
    hook, script = make_hook(refused, refused, max_attempts=2)
    with pytest.raises(VoximplantTransportError, match="could not connect") as caught:
        run(closing(hook, hook.call("A2PSendSms")))
    assert not caught.value.maybe_processed and len(script.calls) == 2


def test_errors_are_the_blocking_hooks_types(make_hook):
    hook, _ = make_hook(ok({"error": {"code": 127, "msg": "No money"}}))
    with pytest.raises(VoximplantApiError) as caught:
        run(closing(hook, hook.call("A2PSendSms")))
    assert caught.value.code == 127 and caught.value.is_fatal
    hook, _ = make_hook(httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(VoximplantHttpError, match="HTTP 200: <html>gateway"):
        run(closing(hook, hook.call("A2PSendSms")))


def test_a_rejected_certificate_is_a_configuration_error(make_hook):
    import ssl

    refused = httpx.ConnectError("handshake failed")
    refused.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed")
    hook, script = make_hook(refused)
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        run(closing(hook, hook.call("A2PSendSms")))
    assert len(script.calls) == 1


def test_set_up_runs_once_in_a_thread(make_hook, monkeypatch):
    threads = []
    load = connection.ConnectionSettings.load

    def recorded(self):
        threads.append(threading.get_ident())
        return load(self)

    monkeypatch.setattr(connection.ConnectionSettings, "load", recorded)
    hook, _ = make_hook(*[ok({"result": {}})] * 3)

    async def three_calls():
        async with hook:
            await asyncio.gather(*(hook.call("GetAccountInfo") for _ in range(3)))
            return threading.get_ident()

    loop_thread = run(three_calls())
    assert len(threads) == 1 and threads[0] != loop_thread


def test_bad_configuration_fails_at_check_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps({"conn_type": "voximplant"}))
    with pytest.raises(CredentialsError, match="password, or its path in the extra"):
        run(VoximplantAsyncHook().check_config())
