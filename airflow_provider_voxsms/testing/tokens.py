"""Build Management API bearer tokens for tests, including deliberately wrong ones."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt

from airflow_provider_voxsms.emulator.credentials import Credentials


def make_token(
    credentials: Credentials,
    *,
    iss: Any = None,
    iat: float | None = None,
    ttl: float = 60,
    kid: str | None = None,
    key: str | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """An RS256 JWT as the official clients make it (``iss`` a string, ``iat`` back-dated 5 s).

    Override ``iss``/``iat``/``ttl``/``kid``/``key`` to provoke each auth error; ``claims``
    replaces the claim set entirely.
    """
    issued = int(time.time()) - 5 if iat is None else int(iat)
    body = (
        claims
        if claims is not None
        else {
            "iss": str(credentials.account_id) if iss is None else iss,
            "iat": issued,
            "exp": issued + int(ttl),
        }
    )
    # PyJWS, not jwt.encode: PyJWT refuses an int ``iss``, which the real API accepts.
    return jwt.PyJWS().encode(
        json.dumps(body).encode(),
        key or credentials.private_key,
        algorithm="RS256",
        headers={"kid": credentials.key_id if kid is None else kid},
    )


def auth_header(credentials: Credentials, **kwargs: Any) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` for :func:`make_token` arguments."""
    return {"Authorization": f"Bearer {make_token(credentials, **kwargs)}"}
