"""Bad connection input gets ONE clear error: it names the problem, carries no traceback chain
from deep inside a library, and never quotes the private key.

Covered: credentials that are not JSON or not the right JSON, keys that are not RSA private
keys, a key id the server does not know (433), a token from the future (455) or expired (456)
through a skewed clock, base URLs without a scheme or with plain http to a remote host, and an
operator run on such a connection (it must fail before the first request).
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner
from airflow_provider_voxsms.errors import (
    ConfigurationError,
    CredentialsError,
    VoximplantApiError,
    VoximplantError,
)
from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator


def pem(key, fmt=serialization.PrivateFormat.PKCS8, encryption=None) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
    ).decode()


def key_lines(private_key: str) -> list[str]:
    """The base64 body lines of a PEM: none may appear in any error text."""
    return [ln.strip() for ln in private_key.splitlines() if ln.strip() and "-----" not in ln]


def assert_one_clear_error(err: BaseException, *words: str, secrets: tuple[str, ...] = ()):
    """The error names the problem, is not chained to a library's exception, leaks no key."""
    message = str(err)
    for word in words:
        assert word.lower() in message.lower(), message
    assert err.__cause__ is None, f"chained to {err.__cause__!r}"
    assert err.__context__ is None or err.__suppress_context__, f"context {err.__context__!r}"
    for secret in secrets:
        for line in key_lines(secret):
            assert line not in message and line not in repr(err), "the key leaked into the error"


def use_connection(monkeypatch, conn_id: str = "voximplant_default", **conn) -> VoximplantHook:
    conn.setdefault("conn_type", "voximplant")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return VoximplantHook(conn_id, max_attempts=1)


def check_hook(hook: VoximplantHook, error_type, *words, secrets=()) -> None:
    """Both ways in: a call raises the one error; test_connection() reports it as text."""
    with pytest.raises(error_type) as info:
        hook.get_account_info()
    assert_one_clear_error(info.value, *words, secrets=secrets)
    ok, message = hook.test_connection()
    assert ok is False
    assert message == str(info.value)


# -- credentials ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "rsa": pem(rsa_key),
        "rsa_traditional": pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
        "ec": pem(ec_key),
        "encrypted": pem(rsa_key, encryption=serialization.BestAvailableEncryption(b"pw")),
        "public": rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    }


def creds(private_key, **changes) -> str:
    data = {"account_id": 4242, "key_id": "kid-1", "private_key": private_key, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


BAD_CREDENTIALS = [
    ("not json", lambda k: "account_id=4242", ["not valid JSON", "line 1"]),
    ("truncated", lambda k: creds(k["rsa"])[:-40], ["not valid JSON"]),
    ("json list", lambda k: json.dumps([k["rsa"]]), ["JSON object", "list"]),
    ("json string", lambda k: json.dumps(k["rsa"]), ["JSON object", "str"]),
    ("no key", lambda k: creds(...), ["lack private_key"]),
    ("no kid", lambda k: creds(k["rsa"], key_id=...), ["lack key_id"]),
    ("empty key", lambda k: creds(""), ["lack private_key"]),
    ("account text", lambda k: creds(k["rsa"], account_id="acme"), ["account_id must be a number"]),
    ("key not str", lambda k: creds({"pem": k["rsa"]}), ["must be strings"]),
    ("garbage pem", lambda k: creds("-----BEGIN PRIVATE KEY-----\nAAAA\n"), ["not a valid"]),
    ("public key", lambda k: creds(k["public"]), ["not a valid unencrypted PEM private key"]),
    ("encrypted", lambda k: creds(k["encrypted"]), ["not a valid unencrypted PEM private key"]),
    ("ec key", lambda k: creds(k["ec"]), ["not an RSA key", "RS256"]),
]


@pytest.mark.parametrize(
    ("text_of", "words"),
    [(t, w) for _, t, w in BAD_CREDENTIALS],
    ids=[name for name, _, _ in BAD_CREDENTIALS],
)
def test_bad_credentials_fail_once_clearly(monkeypatch, keys, text_of, words):
    password = text_of(keys)
    hook = use_connection(monkeypatch, host="http://127.0.0.1:9/platform_api", password=password)
    check_hook(hook, CredentialsError, *words, secrets=tuple(keys.values()))


def test_pkcs1_rsa_key_is_accepted(keys):
    """Not an error case: the "BEGIN RSA PRIVATE KEY" form signs too."""
    signer = TokenSigner(ServiceAccountCredentials.from_json(creds(keys["rsa_traditional"])))
    assert signer.token().count(".") == 2


def test_unreadable_credentials_path(monkeypatch, tmp_path):
    hook = use_connection(
        monkeypatch,
        host="http://127.0.0.1:9/platform_api",
        extra={"credentials_path": str(tmp_path / "missing.json")},
    )
    check_hook(hook, CredentialsError, "Cannot read Voximplant credentials file", "missing.json")


def test_non_numeric_child_account_id(monkeypatch, voximplant_emulator):
    """The extra account_id goes into the token's iss: a non-number is a configuration error."""
    hook = use_connection(
        monkeypatch,
        host=voximplant_emulator.base_url,
        password=voximplant_emulator.credentials_json,
        extra={"account_id": "child-7"},
    )
    check_hook(hook, VoximplantError, "account_id")
    assert voximplant_emulator.state.stats_snapshot()["requests"] == 0


# -- the server refuses the token ----------------------------------------------------------------


def emulator_hook(monkeypatch, server, **credential_changes) -> VoximplantHook:
    data = json.loads(server.credentials_json)
    data.update(credential_changes)
    return use_connection(monkeypatch, host=server.base_url, password=json.dumps(data))


def test_unknown_key_id_is_433(monkeypatch, voximplant_emulator):
    hook = emulator_hook(monkeypatch, voximplant_emulator, key_id="not-this-key")
    check_hook(hook, VoximplantApiError, "433", "Invalid key id")
    assert "433" in voximplant_emulator.state.stats_snapshot()["api_errors"]


def test_key_of_another_account_is_100(monkeypatch, voximplant_emulator, credentials_json):
    """The emulator's key id with a different private key: the signature does not verify."""
    other = json.loads(credentials_json)["private_key"]
    hook = emulator_hook(monkeypatch, voximplant_emulator, private_key=other)
    check_hook(hook, VoximplantApiError, "100", secrets=(other,))


@pytest.mark.parametrize(
    ("offset_s", "code", "words"),
    [
        (+600, 455, "issued in the future"),  # our clock 10 min fast: beyond the 30 s tolerance
        (-7200, 456, "expired"),  # our clock 2 h slow: the token expired an hour ago
        (+25, None, None),  # within tolerance (the signer back-dates iat by 10 s)
        (-3000, None, None),  # slow, but the one-hour token is still valid
    ],
)
def test_clock_skew(monkeypatch, voximplant_emulator, offset_s, code, words):
    hook = emulator_hook(monkeypatch, voximplant_emulator)
    hook.__dict__["signer"] = TokenSigner(hook.credentials, clock=lambda: time.time() + offset_s)
    if code is None:
        assert hook.test_connection()[0] is True
        return
    check_hook(hook, VoximplantApiError, str(code), words)
    assert hook.__dict__["signer"] is not None
    with pytest.raises(VoximplantApiError) as info:
        hook.get_account_info()
    assert info.value.code == code and not info.value.is_throttling


# -- base URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("api.voximplant.com/platform_api", ["needs a scheme and a host"]),
        ("127.0.0.1:8025/platform_api", ["needs a scheme and a host"]),
        ("ftp://api.voximplant.com/platform_api", ["needs a scheme and a host"]),
        ("https://", ["needs a scheme and a host"]),
        ("http://api.voximplant.com/platform_api", ["plain http", "use https"]),
        ("http://10.0.0.5:8025/platform_api", ["plain http"]),
        ("http://localhost.evil.example/platform_api", ["plain http"]),
    ],
)
def test_bad_base_url(monkeypatch, voximplant_emulator, host, words):
    hook = use_connection(monkeypatch, host=host, password=voximplant_emulator.credentials_json)
    check_hook(
        hook,
        ConfigurationError,
        *words,
        secrets=(voximplant_emulator.state.credentials.private_key,),
    )
    assert voximplant_emulator.state.stats_snapshot()["requests"] == 0


def test_https_and_local_http_base_urls_pass_validation(monkeypatch, voximplant_emulator):
    for host in ("https://api.voximplant.com/platform_api/", voximplant_emulator.base_url):
        hook = use_connection(monkeypatch, host=host, password=voximplant_emulator.credentials_json)
        assert hook.base_url == host.rstrip("/")
    assert hook.test_connection()[0] is True


def test_nothing_listening_is_one_clear_error(monkeypatch, voximplant_emulator):
    hook = use_connection(
        monkeypatch,
        host="http://127.0.0.1:9/platform_api",
        password=voximplant_emulator.credentials_json,
    )
    check_hook(hook, VoximplantError, "could not connect")


# -- the operator on a bad connection ------------------------------------------------------------


class FakeTI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"password": "{not json"}, "not valid JSON"),
        ({"password": creds("-----BEGIN PRIVATE KEY-----\nAAAA\n")}, "not a valid"),
        ({"host": "api.voximplant.com/platform_api"}, "needs a scheme"),
        ({"host": "http://api.voximplant.com/platform_api"}, "plain http"),
    ],
    ids=["not-json", "bad-pem", "no-scheme", "remote-http"],
)
def test_operator_fails_before_sending_on_a_bad_connection(
    monkeypatch, voximplant_emulator, changes, words
):
    """The task fails with the connection's own message, no request is made, and no number is
    reported as "unknown" (maybe processed): nothing left this machine."""
    conn = {"host": voximplant_emulator.base_url, "password": voximplant_emulator.credentials_json}
    use_connection(monkeypatch, **{**conn, **changes})
    op = A2PSendSmsOperator(
        task_id="send",
        recipients=[f"4474433322{i:02d}" for i in range(10, 60)],
        text="hi",
        src_number="VoxDemo",
        batch_size=10,
        max_concurrency=2,
    )
    ti = FakeTI()
    with pytest.raises(Exception) as info:
        op.execute({"ti": ti})
    assert words.lower() in str(info.value).lower(), str(info.value)
    assert voximplant_emulator.state.stats_snapshot()["requests"] == 0
    if "unknown_numbers" in ti.pushed:
        assert ti.pushed["unknown_numbers"].empty, ti.pushed["unknown_numbers"]
        assert ti.pushed["accepted_numbers"].empty
