"""The emulator checks bearer tokens the way the Management API does, code by code."""

from __future__ import annotations

import time

import pytest

from airflow_provider_voxsms.emulator import Credentials, auth
from airflow_provider_voxsms.emulator.state import EmulatorConfig
from airflow_provider_voxsms.testing.tokens import make_token

NOW = int(time.time())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_with_string_or_int_iss(api):
    for iss in (
        str(api.server.state.credentials.account_id),
        api.server.state.credentials.account_id,
    ):
        assert "result" in api.call("GetAccountInfo", headers=api.headers(iss=iss)).json()


@pytest.mark.parametrize(
    ("token_args", "code"),
    [
        ({"kid": "no-such-key"}, 433),
        ({"iss": "12345"}, 100),
        ({"iss": "not-a-number"}, 100),
        ({"iat_from_now": +600}, 455),
        ({"iat_from_now": -7200, "ttl": 60}, 456),
        ({"ttl": 3601}, 454),
        ({"ttl": 3600}, None),
        ({"claims": {"iss": "1"}}, 447),
    ],
)
def test_token_errors(api, token_args, code):
    if "claims" in token_args:
        token_args["claims"]["iss"] = str(api.server.state.credentials.account_id)
    if "iat_from_now" in token_args:  # relative to now, not to collection: a slow run is fine
        token_args = {**token_args, "iat": int(time.time()) + token_args["iat_from_now"]}
        del token_args["iat_from_now"]
    body = api.call("GetAccountInfo", headers=api.headers(**token_args)).json()
    if code is None:
        assert "result" in body
    else:
        assert body["error"]["code"] == code, body


def test_wrong_signature_is_authorization_failed(api):
    stranger = Credentials.generate()
    creds = api.server.state.credentials
    token = make_token(creds, key=stranger.private_key)
    assert api.call("GetAccountInfo", headers=bearer(token)).json()["error"]["code"] == 100


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer abc"},
    ],
)
def test_missing_or_malformed_header(api, headers):
    code = api.call("A2PSendSms", headers=headers).json()["error"]["code"]
    assert code == (100 if not headers.get("Authorization", "").startswith("Bearer ") else 447)


def test_hs256_token_is_rejected(api):
    import jwt

    creds = api.server.state.credentials
    now = int(time.time())
    claims = {"iss": str(creds.account_id), "iat": now, "exp": now + 60}
    token = jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": creds.key_id})
    assert api.call("GetAccountInfo", headers=bearer(token)).json()["error"]["code"] == 447


def test_child_account_allowed_only_when_configured(api):
    state = api.server.state
    assert api.call("GetAccountInfo", headers=api.headers(iss="777")).json()["error"]["code"] == 100
    state.configure(child_account_ids=frozenset({777}))
    body = api.ok("GetAccountInfo", headers=api.headers(iss="777"))
    assert body["result"]["account_id"] == 777


def test_token_verified_once_and_cached_until_exp(monkeypatch):
    creds = Credentials.generate()
    clock = [float(NOW)]
    verifier = auth.TokenVerifier([creds], clock=lambda: clock[0])
    calls = []
    real = auth.jwt.decode
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    header = f"Bearer {make_token(creds, iat=NOW, ttl=60)}"
    for _ in range(50):
        assert verifier.verify(header) == creds.account_id
    assert len(calls) == 1
    clock[0] = NOW + 61
    with pytest.raises(auth.ApiError) as exc:
        verifier.verify(header)
    assert exc.value.code == 456


def test_config_default_accepts_no_children():
    assert EmulatorConfig().child_account_ids == frozenset()
