"""Service-account credentials parsing and the RS256 token cache."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner
from airflow_provider_voxsms.errors import CredentialsError


def _with(credentials_json: str, **changes) -> str:
    data = json.loads(credentials_json)
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def _public_key(credentials: ServiceAccountCredentials):
    key = serialization.load_pem_private_key(credentials.private_key.encode(), None)
    return key.public_key()


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parses_credentials_json(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    assert credentials.account_id == 4242
    assert credentials.key_id == json.loads(credentials_json)["key_id"]
    assert "PRIVATE KEY" not in repr(credentials)


def test_reads_credentials_file(tmp_path, credentials_json):
    path = tmp_path / "credentials.json"
    path.write_text(credentials_json)
    assert ServiceAccountCredentials.from_file(path).account_id == 4242
    with pytest.raises(CredentialsError, match="Cannot read Voximplant credentials file"):
        ServiceAccountCredentials.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("text_of", "message"),
    [
        (lambda good: good[:-5], "not valid JSON"),
        (lambda good: "[1, 2]", "must be a JSON object"),
        (lambda good: _with(good, key_id=None), "lack key_id"),
        (
            lambda good: _with(good, private_key=None, account_id=None),
            "lack account_id, private_key",
        ),
        (lambda good: _with(good, account_id="abc"), "account_id must be a number"),
    ],
)
def test_bad_credentials_get_one_clear_error_without_the_key(credentials_json, text_of, message):
    with pytest.raises(CredentialsError, match=message) as caught:
        ServiceAccountCredentials.from_json(text_of(credentials_json))
    assert "PRIVATE KEY" not in str(caught.value)
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_key_that_is_not_a_pem_fails_clearly(credentials_json):
    bad = ServiceAccountCredentials.from_json(_with(credentials_json, private_key="-----BEGIN x"))
    with pytest.raises(CredentialsError, match="not a valid unencrypted PEM private key"):
        TokenSigner(bad)


def test_key_that_is_not_rsa_fails_clearly(credentials_json):
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    bad = ServiceAccountCredentials.from_json(_with(credentials_json, private_key=pem))
    with pytest.raises(CredentialsError, match="not an RSA key") as caught:
        TokenSigner(bad)
    assert pem not in str(caught.value)


def test_token_claims_follow_the_api(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    clock = FakeClock()
    token = TokenSigner(credentials, clock=clock).token()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        _public_key(credentials),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert header == {"alg": "RS256", "typ": "JWT", "kid": credentials.key_id}
    assert claims["iss"] == "4242"
    assert claims["iat"] < clock.now, "iat is back-dated for clock skew"
    assert claims["exp"] - claims["iat"] <= 3600


def test_child_account_goes_into_iss(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    token = TokenSigner(credentials, issuer_account_id=777).token()
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == "777"


def test_token_is_reused_until_shortly_before_expiry(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    clock = FakeClock()
    issued: list[str] = []
    signer = TokenSigner(credentials, refresh_margin_s=300, clock=clock)
    signer.on_new_token = issued.append
    assert signer.cached() is None, "nothing signed yet"
    first = signer.token()
    clock.now += 3000
    assert signer.token() == first and signer.cached() == first
    clock.now += 400  # now inside the refresh margin
    assert signer.cached() is None, "an async caller signs the next one in a thread"
    second = signer.token()
    assert second != first
    assert issued == [first, second]


def test_token_lifetime_is_capped(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    with pytest.raises(ValueError, match="lifetime_s"):
        TokenSigner(credentials, lifetime_s=7200)


def test_secret_fragments_cover_every_key_line(credentials_json):
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    fragments = credentials.secret_fragments()
    body_lines = [line for line in credentials.private_key.splitlines() if "-----" not in line]
    assert set(body_lines) <= set(fragments)
    assert credentials.private_key in fragments


def test_a_process_parses_each_key_once(credentials_json, monkeypatch):
    """Parsing an RSA key holds the GIL for tens of milliseconds (a triggerer's loop waits
    meanwhile, even when the parse runs in a thread): every signer of a key shares one parse."""
    from airflow_provider_voxsms import auth

    parsed = []
    real = auth.load_pem_private_key
    monkeypatch.setattr(
        auth,
        "load_pem_private_key",
        lambda pem, password: parsed.append(pem) or real(pem, password),
    )
    auth._parsed_pem.cache_clear()
    credentials = ServiceAccountCredentials.from_json(credentials_json)
    first, second = TokenSigner(credentials), TokenSigner(credentials, issuer_account_id=7)
    assert len(parsed) == 1
    assert jwt.decode(second.token(), options={"verify_signature": False})["iss"] == "7"
    assert first.token() != second.token()
    bad = json.loads(credentials_json) | {"private_key": "not a key"}
    for _ in range(2):  # an error is not cached: each try says it
        with pytest.raises(CredentialsError, match="not a valid unencrypted PEM"):
            TokenSigner(ServiceAccountCredentials.from_json(json.dumps(bad)))
