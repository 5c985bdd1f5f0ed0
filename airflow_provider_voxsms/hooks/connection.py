"""A ``voximplant`` Airflow connection read into what a hook needs: URL, key, timeouts, TLS.

Both hooks read a connection through :class:`ConnectionSettings`, so they agree on every field.
Its properties are lazy and cached; some block (reading ``credentials_path``, registering
secrets with the log masker, parsing the PEM key, loading CA certificates), which is why the
async hook touches them in a thread (:meth:`ConnectionSettings.load`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk.log import mask_secret

from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner
from airflow_provider_voxsms.errors import ConfigurationError, CredentialsError

DEFAULT_BASE_URL = "https://api.voximplant.com/platform_api"  # same as provider info
CONN_TYPE = "voximplant"


class ConnectionSettings:
    """What one connection says, read lazily.

    :param conn: the Airflow connection (``host``: the API base URL; ``password``: the
        service account's ``credentials.json``; extras ``credentials_path``, ``account_id``,
        ``timeout``, ``ca_bundle``).
    :param connect_timeout_s: how long to wait for a TCP/TLS connection.
    :param read_timeout_s: how long to wait for an answer; defaults to the extra ``timeout``,
        else 60 s.
    """

    def __init__(self, conn: Any, *, connect_timeout_s: float, read_timeout_s: float | None):
        self.conn = conn
        self.conn_id = conn.conn_id
        self.connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s

    def extra(self, name: str) -> Any:
        """An extra field, as the UI form (``extra__voximplant__<name>``) or by hand (``<name>``)."""
        extra = self.conn.extra_dejson
        return extra.get(name) or extra.get(f"extra__{CONN_TYPE}__{name}")

    @cached_property
    def base_url(self) -> str:
        """The API base URL: the connection's host, else Voximplant's public endpoint."""
        return validate_base_url(self.conn.host or DEFAULT_BASE_URL)

    @cached_property
    def credentials(self) -> ServiceAccountCredentials:
        """From the password, else the file the extra ``credentials_path`` names (blocking)."""
        if self.conn.password:
            credentials = ServiceAccountCredentials.from_json(self.conn.password)
        elif path := self.extra("credentials_path"):
            credentials = ServiceAccountCredentials.from_file(path)
        else:
            raise CredentialsError(
                f"Connection {self.conn_id!r} has no Voximplant credentials: put the "
                "content of credentials.json in its password, or its path in the extra "
                "'credentials_path'."
            )
        mask(*credentials.secret_fragments())
        return credentials

    @cached_property
    def signer(self) -> TokenSigner:
        """The token signer, its key parsed (blocking: tens of milliseconds of CPU)."""
        child = self.extra("account_id")
        try:
            issuer = int(child) if child else None
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Connection {self.conn_id!r}: extra 'account_id' (the child account "
                f"to act for) must be a number, got {child!r}."
            ) from None
        signer = TokenSigner(self.credentials, issuer_account_id=issuer)
        signer.on_new_token = mask
        return signer

    @cached_property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds."""
        read = self._read_timeout_s or self.extra("timeout") or 60
        try:
            read = float(read)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Connection {self.conn_id!r}: extra 'timeout' must be a number of "
                f"seconds, got {read!r}."
            ) from None
        return (self.connect_timeout_s, read)

    @cached_property
    def verify(self) -> str | bool:
        """TLS is always verified: against the extra ``ca_bundle`` when set, else the system's
        certificates (or ``REQUESTS_CA_BUNDLE``). requests takes this per request, because it
        lets that environment variable override a session-wide setting."""
        return self.extra("ca_bundle") or True

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """The same trust as :attr:`verify` as an SSL context, for httpx (blocking: loads the
        CA certificates): the extra ``ca_bundle``, else ``REQUESTS_CA_BUNDLE`` or
        ``CURL_CA_BUNDLE``, else certifi's bundle, as requests resolves ``verify=True``."""
        where = self.verify
        if where is True:
            import certifi

            where = (
                os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE")
                or certifi.where()
            )
        if os.path.isdir(where):
            return ssl.create_default_context(capath=where)
        return ssl.create_default_context(cafile=where)

    def load(self) -> ConnectionSettings:
        """Read and check everything now (blocking), so that a bad URL or unusable credentials
        fail with their clear error before anything is sent; returns self."""
        _ = self.base_url, self.timeout, self.signer
        return self


def validate_base_url(url: str) -> str:
    """Check the API base URL: https, or plain http only to this machine (an emulator)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"Voximplant API base URL {url!r} needs a scheme and a host, e.g. {DEFAULT_BASE_URL} "
            "(or http://127.0.0.1:8025/platform_api for the local emulator)."
        )
    if parts.scheme == "http" and not _is_local(parts.hostname):
        raise ConfigurationError(
            f"Voximplant API base URL {url!r} uses plain http to a remote host, which would send "
            "the access token unencrypted; use https (plain http is allowed to this machine only)."
        )
    return url.strip().rstrip("/")


def _is_local(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def mask(*secrets: str) -> None:
    """Register secrets with Airflow's log masker so they never reach task logs."""
    for secret in secrets:
        mask_secret(secret)
