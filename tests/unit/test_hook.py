"""VoximplantHook in isolation: request shape, error mapping and what is (not) retried.

The transport is a scripted stand-in for ``requests.Session.post``; the hook's behaviour over real
HTTP against the emulator is covered in tests/integration/test_hook_emulator.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_voxsms import UI_FIELD_BEHAVIOUR, get_provider_info
from airflow_provider_voxsms.errors import (
    ConfigurationError,
    CredentialsError,
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.hooks.voximplant import VoximplantHook, validate_base_url

BASE = "http://127.0.0.1:8025/platform_api"


def _response(status: int = 200, body: object = None, headers: dict | None = None):
    response = requests.Response()
    response.status_code = status
    response._content = (body if isinstance(body, str) else json.dumps(body or {})).encode()
    response.headers.update(headers or {})
    return response


class ScriptedTransport:
    """Answers each post with the next scripted response or exception, and records the calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[dict] = []

    def __call__(self, url, data=None, headers=None, timeout=None, verify=None):
        form = dict(parse_qsl(data, keep_blank_values=True))
        self.calls.append(
            {"url": url, "data": form, "headers": headers, "timeout": timeout, "verify": verify}
        )
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def make_hook(monkeypatch, credentials_json):
    def make(*answers, extra: dict | None = None, host: str = BASE, **hook_args):
        conn = {"conn_type": "voximplant", "host": host, "password": credentials_json}
        if extra:
            conn["extra"] = extra
        monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
        hook_args.setdefault("backoff_initial_s", 0.001)
        hook = VoximplantHook(**hook_args)
        transport = ScriptedTransport(*answers)
        monkeypatch.setattr(hook.session, "post", transport)
        return hook, transport

    return make


def test_call_sends_a_form_body_to_the_method_url(make_hook):
    hook, transport = make_hook(_response(body={"result": 1}), extra={"timeout": 7})
    answer = hook.call(
        "A2PGetSmsHistory",
        message_id=[1, 2, 3],
        from_date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        store_body=True,
        count=None,
    )
    assert answer == {"result": 1}
    call = transport.calls[0]
    assert call["url"] == f"{BASE}/A2PGetSmsHistory"
    assert call["data"] == {
        "message_id": "1;2;3",
        "from_date": "2026-01-02 03:04:05",
        "store_body": "true",
    }
    assert call["headers"]["Authorization"].startswith("Bearer ey")
    assert call["timeout"] == (10.0, 7.0)
    assert call["verify"] is True, "TLS is verified"


def test_a2p_send_sms_parses_the_answer(make_hook):
    answer = {
        "result": [{"message_id": 11, "destination_number": "447443332212"}],
        "failed": [{"destination_number": "1", "error_code": 506, "error_description": "x"}],
        "fragments_count": 2,
    }
    hook, transport = make_hook(_response(body=answer))
    sent = hook.a2p_send_sms("447443332211", ["447443332212", "1"], "hello")
    assert sent.result == answer["result"] and sent.failed == answer["failed"]
    assert sent.fragments_count == 2
    assert transport.calls[0]["data"]["dst_numbers"] == "447443332212;1"
    assert transport.calls[0]["data"]["store_body"] == "false"


@pytest.mark.parametrize("count", [0, 101])
def test_a2p_send_sms_refuses_batches_the_api_cannot_take(make_hook, count):
    hook, transport = make_hook()
    with pytest.raises(ValueError, match=r"1\.\.100 numbers"):
        hook.a2p_send_sms("1", ["447443332212"] * count, "hi")
    assert transport.calls == []


def test_api_error_becomes_a_typed_exception_and_is_not_retried(make_hook):
    hook, transport = make_hook(_response(body={"error": {"code": 127, "msg": "No money"}}))
    with pytest.raises(VoximplantApiError) as caught:
        hook.call("A2PSendSms", text="x")
    assert (caught.value.code, caught.value.message, caught.value.is_fatal) == (
        127,
        "No money",
        True,
    )
    assert len(transport.calls) == 1


@pytest.mark.parametrize(
    "throttled",
    [
        _response(429, "Too Many Requests", {"Retry-After": "0"}),
        _response(503, "<html>busy</html>"),
        _response(body={"error": {"code": 340, "msg": "Rate limit exceeded"}}),
        _response(body={"error": {"code": 416, "msg": "Repeat after 0 seconds"}}),
        _response(body={"error": {"code": 314, "msg": "Concurrent resource limit"}}),
    ],
)
def test_throttling_is_retried_even_for_sends(make_hook, throttled, capsys):
    hook, transport = make_hook(throttled, _response(body={"result": [], "fragments_count": 1}))
    assert hook.a2p_send_sms("1", ["447443332212"], "hi").fragments_count == 1
    assert len(transport.calls) == 2
    assert "Voximplant back-off" in capsys.readouterr().out


def test_repeat_after_is_honoured(make_hook):
    error = VoximplantApiError("A2PSendSms", 416, "Repeat after 3 seconds")
    assert error.retry_after == 3.0
    hook, _ = make_hook(backoff_max_s=60)
    assert hook.policy.delay(1, error) == 3.0


def test_throttling_gives_up_after_max_attempts(make_hook):
    hook, transport = make_hook(*[_response(429, "slow down")] * 3, max_attempts=3)
    with pytest.raises(VoximplantHttpError, match="HTTP 429"):
        hook.call("A2PSendSms")
    assert len(transport.calls) == 3


def test_connection_never_opened_is_retried(make_hook):
    refused = requests.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "Connection refused"))
    )
    hook, transport = make_hook(refused, _response(body={"result": {}}))
    assert hook.call("A2PSendSms") == {"result": {}}
    assert len(transport.calls) == 2


def refused() -> requests.ConnectionError:
    return requests.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "Connection refused"))
    )


def test_before_the_first_answer_connection_failures_are_retried_within_a_bound(make_hook):
    hook, transport = make_hook(
        *[refused() for _ in range(8)], first_contact_s=1.0, backoff_initial_s=0.2
    )
    with pytest.raises(VoximplantTransportError) as caught:
        hook.a2p_send_sms("1", ["447443332212"], "hi")
    assert 2 <= len(transport.calls) < 8  # the bound, not max_attempts, ended the retries
    assert all(call["timeout"][0] <= 1.0 for call in transport.calls)  # cut to the bound
    assert "could not connect to " + BASE in str(caught.value)
    assert "so nothing was sent" in str(caught.value)
    assert not caught.value.maybe_processed


def test_a_first_answer_that_throttles_is_retried_past_the_bound(make_hook):
    """The bound ends with the first answer, also within that call's own retries."""
    throttled = _response(429, "busy", {"Retry-After": "0.3"})
    hook, transport = make_hook(
        throttled, throttled, _response(body={"result": {}}), first_contact_s=0.1
    )
    assert hook.call("A2PSendSms") == {"result": {}}
    assert len(transport.calls) == 3
    assert transport.calls[-1]["timeout"] == hook.timeout


def test_after_the_first_answer_the_retry_policy_alone_applies(make_hook):
    ok = _response(body={"result": {}})
    hook, transport = make_hook(
        ok, *[refused() for _ in range(7)], _response(body={"result": {}}), first_contact_s=0.01
    )
    hook.call("GetAccountInfo")
    assert hook.call("A2PSendSms") == {"result": {}}
    assert len(transport.calls) == 9  # every one of max_attempts, whatever first_contact_s
    assert transport.calls[-1]["timeout"] == hook.timeout


@pytest.mark.parametrize(
    "ambiguous",
    [requests.ReadTimeout("read timed out"), requests.ConnectionError("Connection reset by peer")],
)
def test_a_send_that_may_have_been_processed_is_never_resent(make_hook, ambiguous):
    """Sent once; as the API has not answered this hook yet, a read-only probe then asks
    whether the host answers at all: it does, so the send's own error is raised, ambiguous."""
    hook, transport = make_hook(ambiguous, _response(body={}))
    with pytest.raises(VoximplantTransportError) as caught:
        hook.a2p_send_sms("1", ["447443332212"], "hi")
    assert caught.value.maybe_processed
    assert "never" not in str(caught.value) and "Host" not in str(caught.value)
    methods = [call["url"].rsplit("/", 1)[1] for call in transport.calls]
    assert methods == ["A2PSendSms", "GetAccountInfo"]


def test_a_first_send_without_an_answer_from_a_host_that_answers_nothing_names_the_host(
    make_hook,
):
    hook, transport = make_hook(
        requests.ReadTimeout("read timed out"), requests.ReadTimeout("read timed out")
    )
    with pytest.raises(VoximplantTransportError, match="sent no answer") as caught:
        hook.a2p_send_sms("1", ["447443332212"], "hi")
    assert caught.value.maybe_processed
    assert len(transport.calls) == 2, "the send, then the probe"


def test_server_error_on_a_send_is_not_retried_but_reads_are(make_hook):
    hook, transport = make_hook(_response(500, "oops"))
    with pytest.raises(VoximplantHttpError, match="HTTP 500: oops"):
        hook.call("A2PSendSms")
    assert len(transport.calls) == 1

    hook, transport = make_hook(_response(500, "oops"), _response(body={"result": {"a": 1}}))
    assert hook.get_account_info() == {"a": 1}
    assert len(transport.calls) == 2


def test_non_json_200_is_a_clear_error(make_hook):
    hook, _ = make_hook(_response(200, "<html>gateway</html>"))
    with pytest.raises(VoximplantHttpError, match="HTTP 200: <html>gateway"):
        hook.call("A2PSendSms")


def test_test_connection_reports_failure_as_text(make_hook):
    hook, _ = make_hook(_response(body={"error": {"code": 100, "msg": "Authorization failed"}}))
    ok, message = hook.test_connection()
    assert not ok and "100" in message and "Authorization failed" in message


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError(
            MaxRetryError(None, "/", NewConnectionError(None, "Connection refused"))
        ),
        requests.ReadTimeout("read timed out"),
    ],
    ids=["refused", "read-timeout"],
)
def test_test_connection_reports_a_network_failure_as_text(make_hook, failure):
    hook, transport = make_hook(failure, failure, max_attempts=2)
    ok, message = hook.test_connection()
    assert not ok
    assert "GetAccountInfo" in message and type(failure).__name__ in message
    assert len(transport.calls) == 2  # a read: retried like any other, then reported, not raised


def test_missing_credentials_name_both_places(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps({"conn_type": "voximplant"}))
    with pytest.raises(CredentialsError, match="password, or its path in the extra"):
        VoximplantHook().signer  # noqa: B018


def test_credentials_path_extra(monkeypatch, tmp_path, credentials_json):
    path = tmp_path / "credentials.json"
    path.write_text(credentials_json)
    conn = {"conn_type": "voximplant", "extra": {"credentials_path": str(path)}}
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", json.dumps(conn))
    hook = VoximplantHook()
    assert hook.credentials.account_id == 4242
    assert hook.base_url == "https://api.voximplant.com/platform_api"


def test_bad_timeout_extra(make_hook):
    hook, _ = make_hook(extra={"timeout": "soon"})
    with pytest.raises(ConfigurationError, match="'timeout' must be a number"):
        hook.timeout  # noqa: B018


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("api.voximplant.com/platform_api", "needs a scheme"),
        ("ftp://api.voximplant.com", "needs a scheme"),
        ("http://api.voximplant.com/platform_api", "plain http to a remote host"),
    ],
)
def test_bad_base_urls(url, problem):
    with pytest.raises(ConfigurationError, match=problem):
        validate_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.voximplant.com/platform_api/",
        "http://127.0.0.1:8025/platform_api",
        "http://localhost:8025/platform_api",
        "http://[::1]:8025/platform_api",
    ],
)
def test_good_base_urls(url):
    assert validate_base_url(url) == url.rstrip("/")


def test_provider_info_declares_the_connection_form():
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == VoximplantHook.conn_type
    assert conn_type["hook-class-name"].endswith("hooks.voximplant.VoximplantHook")
    assert set(conn_type["conn-fields"]) == {
        "credentials_path",
        "timeout",
        "ca_bundle",
        "account_id",
    }
    behaviour = VoximplantHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == UI_FIELD_BEHAVIOUR["relabeling"]


@pytest.mark.parametrize(
    "fields",
    [
        {"dst_numbers": "447443332212;14155552671", "text": "Hi & bye = 100% ✓"},
        {"text": "a+b c/d?e#f", "src_number": "VoxDemo", "store_body": "false"},
        {"dst_numbers": "\uff11\uff12\uff13;456", "message_id": "1;2;3"},  # full-width digits
    ],
)
def test_form_body_is_what_requests_would_send(fields):
    from airflow_provider_voxsms.hooks.policy import encode_form

    assert encode_form(fields) == urlencode(fields)


def test_a_rejected_certificate_is_a_configuration_error_but_other_tls_failures_are_unknown(
    make_hook,
):
    import ssl

    rejected = requests.exceptions.SSLError(
        MaxRetryError(None, "/", ssl.SSLCertVerificationError(1, "certificate verify failed"))
    )
    hook, transport = make_hook(rejected)
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        hook.a2p_send_sms("1", ["447443332212"], "hi")
    assert len(transport.calls) == 1

    broken = requests.exceptions.SSLError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")
    hook, transport = make_hook(broken, _response(body={}))  # then the host answers a probe
    with pytest.raises(VoximplantTransportError) as caught:
        hook.a2p_send_sms("1", ["447443332212"], "hi")
    assert caught.value.maybe_processed, "the request may already have been sent"
    assert len(transport.calls) == 2
