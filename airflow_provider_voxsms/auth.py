"""Service-account credentials (``credentials.json``) and the RS256 tokens the Management API takes.

Loading a PEM costs tens of milliseconds while signing with a loaded key costs well under one,
so a process parses each key once (every hook of a worker, every trigger of a triggerer shares
it: the parse holds the GIL, so even in a thread it stalls a triggerer's event loop) and a
signer reuses one token until shortly before it expires.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from airflow_provider_voxsms.errors import CredentialsError

REQUIRED_KEYS = ("account_id", "key_id", "private_key")
MAX_TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class ServiceAccountCredentials:
    """The content of a Voximplant service account's ``credentials.json``."""

    account_id: int
    key_id: str
    private_key: str = field(repr=False)
    account_email: str | None = None

    @classmethod
    def from_json(cls, text: str) -> ServiceAccountCredentials:
        """Parse ``credentials.json`` text; errors name the problem and never quote the content."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            position = f" (line {err.lineno}, column {err.colno})" if hasattr(err, "lineno") else ""
            raise CredentialsError(
                f"Voximplant credentials are not valid JSON{position}. Paste the whole "
                "credentials.json downloaded from the Voximplant control panel "
                "(Service accounts) into the connection's password field."
            ) from None
        if not isinstance(data, dict):
            raise CredentialsError(
                "Voximplant credentials must be a JSON object with "
                f"{', '.join(REQUIRED_KEYS)}; got a JSON {type(data).__name__}."
            )
        missing = [key for key in REQUIRED_KEYS if not data.get(key)]
        if missing:
            raise CredentialsError(
                f"Voximplant credentials lack {', '.join(missing)}. Expected the credentials.json "
                f"of a service account with keys {', '.join(REQUIRED_KEYS)}."
            )
        try:
            account_id = int(data["account_id"])
        except (TypeError, ValueError):
            raise CredentialsError("Voximplant credentials: account_id must be a number.") from None
        if not isinstance(data["private_key"], str) or not isinstance(data["key_id"], str):
            raise CredentialsError(
                "Voximplant credentials: key_id and private_key must be strings."
            )
        return cls(account_id, data["key_id"], data["private_key"], data.get("account_email"))

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceAccountCredentials:
        """Read ``credentials.json`` from a file (the connection extra ``credentials_path``)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise CredentialsError(
                f"Cannot read Voximplant credentials file {path}: {err.strerror}."
            ) from None
        return cls.from_json(text)

    def secret_fragments(self) -> list[str]:
        """The key and each line of its body, for registering with a log masker."""
        lines = [line.strip() for line in self.private_key.splitlines()]
        return [self.private_key, *(line for line in lines if line and "-----" not in line)]


def load_private_key(credentials: ServiceAccountCredentials) -> RSAPrivateKey:
    """The parsed key (once per process per key); a key that is not an RSA private key gets
    one clear error."""
    try:
        key = _parsed_pem(credentials.private_key)
    except (ValueError, TypeError):
        raise CredentialsError(
            f"The private_key of Voximplant key {credentials.key_id} is not a valid unencrypted "
            "PEM private key. Download a new credentials.json for the service account."
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise CredentialsError(
            f"The private_key of Voximplant key {credentials.key_id} is not an RSA key; "
            "the Management API signs tokens with RS256."
        )
    return key


@functools.lru_cache(maxsize=16)
def _parsed_pem(pem: str) -> object:
    """A PEM private key, parsed (40-50 ms of CPU for RSA-2048, holding the GIL); errors are
    not cached."""
    return load_pem_private_key(pem.encode(), password=None)


class TokenSigner:
    """Issues RS256 tokens for one account, reusing each until ``refresh_margin_s`` before expiry.

    ``iat`` is back-dated by ``clock_skew_s`` so that a server whose clock runs a little behind
    ours does not reject the token as issued in the future. Thread-safe.
    """

    def __init__(
        self,
        credentials: ServiceAccountCredentials,
        *,
        issuer_account_id: int | None = None,
        lifetime_s: int = MAX_TOKEN_LIFETIME_S,
        refresh_margin_s: int = 300,
        clock_skew_s: int = 10,
        clock: Callable[[], float] = time.time,
    ):
        if not 0 < lifetime_s <= MAX_TOKEN_LIFETIME_S:
            raise ValueError(f"lifetime_s must be in 1..{MAX_TOKEN_LIFETIME_S}, got {lifetime_s}")
        self._key = load_private_key(credentials)
        self._key_id = credentials.key_id
        self._issuer = str(issuer_account_id or credentials.account_id)
        self._lifetime_s = lifetime_s
        self._refresh_margin_s = min(refresh_margin_s, lifetime_s // 2)
        self._clock_skew_s = clock_skew_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.on_new_token: Callable[[str], None] | None = None

    def cached(self) -> str | None:
        """The current token while it needs no refresh, else None: then :meth:`token` signs a
        new one (about a millisecond of CPU, and the log masker: async callers use a thread)."""
        with self._lock:
            fresh = self._clock() < self._expires_at - self._refresh_margin_s
            return self._token if fresh else None

    def token(self) -> str:
        """A valid token, signing a new one only when the cached one is close to expiry."""
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._expires_at - self._refresh_margin_s:
                issued_at = int(now) - self._clock_skew_s
                self._expires_at = issued_at + self._lifetime_s
                self._token = jwt.encode(
                    {"iss": self._issuer, "iat": issued_at, "exp": int(self._expires_at)},
                    self._key,
                    algorithm="RS256",
                    headers={"kid": self._key_id},
                )
                if self.on_new_token:
                    self.on_new_token(self._token)
            return self._token
