"""Bearer-token verification as the Management API does it: RS256 JWT signed by a known key."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import jwt

from airflow_provider_voxsms.emulator import errors
from airflow_provider_voxsms.emulator.credentials import Credentials
from airflow_provider_voxsms.emulator.errors import ApiError

MAX_TTL_S = 3600
CLOCK_SKEW_S = 30
_CACHE_LIMIT = 50_000


class TokenVerifier:
    """Checks ``Authorization`` headers; each distinct token is verified once and cached until exp.

    :param credentials: the keys the server knows; ``kid`` selects one.
    :param child_account_ids: other account ids a key's owner may put in ``iss``.
    :param clock: seconds since the epoch (injectable for tests).
    """

    def __init__(
        self,
        credentials: Iterable[Credentials],
        child_account_ids: Iterable[int] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = {c.key_id: c for c in credentials}
        self._children = frozenset(int(a) for a in child_account_ids)
        self._clock = clock
        self._verified: dict[str, tuple[int, int]] = {}  # token -> (account id, exp)

    def verify(self, authorization: str | None) -> int:
        """Return the account id the request acts for, or raise ApiError with the API's code."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(errors.AUTH_FAILED, "Authorization failed")
        token = authorization[7:].strip()
        now = self._clock()
        hit = self._verified.get(token)
        if hit is None:
            hit = self._verify_new(token, now)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
            self._verified[token] = hit
        if hit[1] <= now:
            self._verified.pop(token, None)
            raise ApiError(errors.TOKEN_EXPIRED, "Token expired")
        return hit[0]

    def _verify_new(self, token: str, now: float) -> tuple[int, int]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ApiError(errors.INVALID_TOKEN_FORMAT, "Invalid token format") from None
        if header.get("alg") != "RS256":
            raise ApiError(errors.INVALID_TOKEN_FORMAT, "Invalid token format: alg must be RS256")
        creds = self._keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
        if creds is None:
            raise ApiError(errors.INVALID_KEY_ID, "Invalid key id")
        try:
            claims = jwt.decode(
                token,
                creds.public_key,
                algorithms=["RS256"],
                options={  # times and iss are checked below, with the API's own error codes
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise ApiError(errors.AUTH_FAILED, "Authorization failed") from None
        except jwt.PyJWTError:
            raise ApiError(errors.INVALID_TOKEN_FORMAT, "Invalid token format") from None
        iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            raise ApiError(errors.INVALID_TOKEN_FORMAT, "Invalid token format: iat and exp needed")
        if exp - iat > MAX_TTL_S or exp <= iat:
            raise ApiError(errors.INVALID_TOKEN_TTL, "Invalid token TTL")
        if iat > now + CLOCK_SKEW_S:
            raise ApiError(errors.TOKEN_FROM_FUTURE, "Token issued in the future")
        if exp <= now:
            raise ApiError(errors.TOKEN_EXPIRED, "Token expired")
        account = _account_id(iss)
        if account != creds.account_id and account not in self._children:
            raise ApiError(errors.AUTH_FAILED, "Authorization failed")
        return account, int(exp)


def _account_id(iss: object) -> int | None:
    """``iss`` may be an int or a decimal string (the official Python client sends a string)."""
    if isinstance(iss, int) and not isinstance(iss, bool):
        return iss
    if isinstance(iss, str) and iss.isdigit():
        return int(iss)
    return None
