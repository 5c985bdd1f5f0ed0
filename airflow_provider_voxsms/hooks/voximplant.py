"""VoximplantHook: an Airflow connection turned into an authenticated, pooled API client."""

from __future__ import annotations

import ipaddress
import random
import ssl
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.exceptions import NewConnectionError

from airflow_provider_voxsms import UI_FIELD_BEHAVIOUR
from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner
from airflow_provider_voxsms.errors import (
    ConfigurationError,
    CredentialsError,
    VoximplantApiError,
    VoximplantError,
    VoximplantHttpError,
    VoximplantTransportError,
    is_throttling,
)
from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE, A2PSendSmsResponse

DEFAULT_BASE_URL = "https://api.voximplant.com/platform_api"  # same as provider info
MAX_NUMBERS_PER_REQUEST = MAX_BATCH_SIZE
# Methods that only read: repeating one can never send an SMS, so every failure is retried.
READ_ONLY_METHODS = frozenset({"GetAccountInfo", "A2PGetSmsHistory"})


class _PauseGate:
    """A shared "not before" time: one throttled request pauses every thread of the hook."""

    def __init__(self):
        self._lock = threading.Lock()
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (delay := self._until - time.monotonic()) > 0:
            time.sleep(delay)


class VoximplantHook(BaseHook):
    """Calls Voximplant's Management API with a service account's credentials.

    One hook holds one parsed key, one cached token and one pooled HTTP session, and is safe to
    share between threads.

    What is retried: throttling answers (HTTP 429 and 503, API errors 314, 340 and 416), which
    mean the request was not processed, with capped exponential back-off and jitter or the wait
    the API names; connections that could not be opened; and, for read-only methods, any
    network or server failure. What is left to the caller: a request that may have been
    processed (read timeout, connection reset after sending, HTTP 5xx) raises
    :class:`VoximplantTransportError` or :class:`VoximplantHttpError` and is never re-sent, so
    an SMS cannot go out twice.

    :param voximplant_conn_id: Airflow connection of type ``voximplant``.
    :param max_attempts: attempts per call, the first included, before a throttling or
        connection failure is raised.
    :param backoff_initial_s: first back-off wait; it doubles per attempt, with jitter.
    :param backoff_max_s: cap on one back-off wait.
    :param connect_timeout_s: how long to wait for a TCP/TLS connection.
    :param read_timeout_s: how long to wait for an answer; defaults to the connection's
        ``timeout`` extra, else 60 s.
    :param pool_size: connections kept open; at least the number of threads sharing the hook.
    """

    conn_name_attr = "voximplant_conn_id"
    default_conn_name = "voximplant_default"
    conn_type = "voximplant"
    hook_name = "Voximplant"

    def __init__(
        self,
        voximplant_conn_id: str = default_conn_name,
        *,
        max_attempts: int = 8,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        pool_size: int = 16,
    ):
        super().__init__()
        self.voximplant_conn_id = voximplant_conn_id
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self.pool_size = pool_size
        self._pause = _PauseGate()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout (what provider info declares under ui-field-behaviour)."""
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    # -- connection -> settings -------------------------------------------------------------

    @cached_property
    def _connection(self):
        return self.get_connection(self.voximplant_conn_id)

    def _extra(self, name: str) -> Any:
        """An extra field, as the UI form (``extra__voximplant__<name>``) or by hand (``<name>``)."""
        extra = self._connection.extra_dejson
        return extra.get(name) or extra.get(f"extra__{self.conn_type}__{name}")

    @cached_property
    def base_url(self) -> str:
        """The API base URL: the connection's host, else Voximplant's public endpoint."""
        return validate_base_url(self._connection.host or DEFAULT_BASE_URL)

    @cached_property
    def credentials(self) -> ServiceAccountCredentials:
        conn = self._connection
        if conn.password:
            credentials = ServiceAccountCredentials.from_json(conn.password)
        elif path := self._extra("credentials_path"):
            credentials = ServiceAccountCredentials.from_file(path)
        else:
            raise CredentialsError(
                f"Connection {self.voximplant_conn_id!r} has no Voximplant credentials: put the "
                "content of credentials.json in its password, or its path in the extra "
                "'credentials_path'."
            )
        _mask(*credentials.secret_fragments())
        return credentials

    @cached_property
    def signer(self) -> TokenSigner:
        child = self._extra("account_id")
        try:
            issuer = int(child) if child else None
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Connection {self.voximplant_conn_id!r}: extra 'account_id' (the child account "
                f"to act for) must be a number, got {child!r}."
            ) from None
        signer = TokenSigner(self.credentials, issuer_account_id=issuer)
        signer.on_new_token = _mask
        return signer

    @cached_property
    def timeout(self) -> tuple[float, float]:
        read = self._read_timeout_s or self._extra("timeout") or 60
        try:
            read = float(read)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Connection {self.voximplant_conn_id!r}: extra 'timeout' must be a number of "
                f"seconds, got {read!r}."
            ) from None
        return (self.connect_timeout_s, read)

    @cached_property
    def session(self) -> requests.Session:
        """One pooled session for every call of this hook."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @cached_property
    def verify(self) -> str | bool:
        """TLS is always verified: against the extra ``ca_bundle`` when set, else the system's
        certificates (or ``REQUESTS_CA_BUNDLE``). Passed per request, because requests lets
        that environment variable override a session-wide setting."""
        return self._extra("ca_bundle") or True

    def get_conn(self) -> requests.Session:
        return self.session

    def check_config(self) -> None:
        """Read the connection and load the key now, so that a bad URL, missing connection or
        unusable credentials fail with their clear error before anything is sent."""
        _ = self.base_url, self.timeout, self.signer

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict:
        """Call a Management API method and return its JSON answer.

        Parameters go in a form-encoded body of ``POST <base>/<method>``, so message texts stay
        out of URLs and access logs; lists are joined with ``;``, ``None`` values are left out.
        Raises :class:`VoximplantApiError` for an ``{"error": ...}`` answer.
        """
        body = _encode_form(
            {key: _form_value(value) for key, value in params.items() if value is not None}
        )
        read_only = method in READ_ONLY_METHODS

        def retryable(error: BaseException) -> bool:
            if is_throttling(error):
                return True
            if isinstance(error, VoximplantTransportError):
                return read_only or not error.maybe_processed
            return read_only and isinstance(error, VoximplantHttpError) and error.status >= 500

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._backoff,
            before_sleep=self._log_backoff,
            reraise=True,
        )
        return retrying(self._post, method, body)

    def a2p_send_sms(
        self, src_number: str, dst_numbers: list[str], text: str, store_body: bool = False
    ) -> A2PSendSmsResponse:
        """Send one A2P SMS request to at most 100 numbers (digits only, international format)."""
        if not 1 <= len(dst_numbers) <= MAX_NUMBERS_PER_REQUEST:
            raise ValueError(
                f"A2PSendSms takes 1..{MAX_NUMBERS_PER_REQUEST} numbers per request, "
                f"got {len(dst_numbers)}; split the list into batches."
            )
        answer = self.call(
            "A2PSendSms",
            src_number=src_number,
            dst_numbers=list(dst_numbers),
            text=text,
            store_body=store_body,
        )
        return A2PSendSmsResponse(
            result=list(answer.get("result") or []),
            failed=list(answer.get("failed") or []),
            fragments_count=int(answer.get("fragments_count") or 0),
        )

    def a2p_get_sms_history(self, **filters: Any) -> dict:
        """Query sent A2P SMS (``message_id``, ``destination_number``, ``from_date``, ``count``...).

        Dates may be given as ``datetime`` (converted to UTC ``yyyy-MM-dd HH:mm:ss``) or strings.
        Returns ``{"result": [...rows], "total_count": int}``.
        """
        return self.call("A2PGetSmsHistory", **filters)

    def get_account_info(self) -> dict:
        """The account the credentials belong to (``account_id``, ``api_address``, ...)."""
        return self.call("GetAccountInfo").get("result", {})

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection end to end (credentials, token, network) with GetAccountInfo.

        Every failure is reported as text, never raised: ``call`` turns network errors into
        :class:`VoximplantTransportError`, so one ``except VoximplantError`` covers them all.
        """
        try:
            info = self.get_account_info()
        except VoximplantError as err:
            return False, str(err)
        name = info.get("account_name") or info.get("account_email") or ""
        return True, f"Connected to Voximplant account {info.get('account_id')} {name}".strip()

    # -- transport ----------------------------------------------------------------------------

    def _post(self, method: str, body: str) -> dict:
        self._pause.wait()
        headers = {
            "Authorization": f"Bearer {self.signer.token()}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        url = f"{self.base_url}/{method}"
        try:
            response = self.session.post(
                url, data=body, headers=headers, timeout=self.timeout, verify=self.verify
            )
        except requests.exceptions.SSLError as err:
            if not _certificate_rejected(err):  # a TLS failure later on may follow the request
                raise _transport_error(method, err, self.base_url) from None
            raise ConfigurationError(
                f"TLS certificate verification of {self.base_url} failed, so nothing was sent. "
                "If the server uses a private CA (or is the emulator), set the connection extra "
                "'ca_bundle' to that CA's certificate file."
            ) from None
        except requests.RequestException as err:
            raise _transport_error(method, err, self.base_url) from None
        return _parse_answer(method, response)

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = getattr(error, "retry_after", None)
        if hinted is None:
            ceiling = min(
                self.backoff_max_s, self.backoff_initial_s * 2 ** (state.attempt_number - 1)
            )
            hinted = random.uniform(ceiling / 2, ceiling)
        delay = min(float(hinted), self.backoff_max_s)
        if error is not None and is_throttling(error):
            self._pause.hold(delay)
        return delay

    def _log_backoff(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "Voximplant back-off: %s; attempt %d of %d, waiting %.1f s",
            error,
            state.attempt_number,
            self.max_attempts,
            state.upcoming_sleep,
        )


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


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set):
        return ";".join(str(item) for item in value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _encode_form(fields: dict[str, str]) -> str:
    """The form body requests would build (urlencode with quote_plus), byte for byte, faster.

    ``dst_numbers`` (up to 100 numbers joined with ";") is most of every A2PSendSms body; when a
    value is digits and ";" only it is encoded with one replace instead of a per-byte loop.
    """
    return "&".join(f"{quote_plus(k)}={_quote_form_value(v)}" for k, v in fields.items())


def _quote_form_value(value: str) -> str:
    digits = value.replace(";", "")
    if digits.isascii() and digits.isdigit():
        return value.replace(";", "%3B")
    return quote_plus(value)


def _parse_answer(method: str, response: requests.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict):
        raise VoximplantHttpError(
            method, response.status_code, response.text, _retry_after(response)
        )
    if isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise VoximplantApiError(method, _int(error.get("code")), str(error.get("msg", "")))
    return answer


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _transport_error(
    method: str, err: requests.RequestException, base_url: str
) -> VoximplantTransportError:
    reason = getattr(err.args[0], "reason", None) if err.args else None
    never_sent = isinstance(err, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    if never_sent:
        what = (
            f"could not connect to {base_url} ({type(err).__name__}): check the connection's "
            "Host and that this worker can reach it"
        )
    else:
        what = f"no answer (the request may have been processed): {type(err).__name__}"
    return VoximplantTransportError(method, what, maybe_processed=not never_sent)


def _certificate_rejected(err: BaseException) -> bool:
    """True when the server's certificate was refused: the handshake failed, nothing was sent."""
    seen: set[int] = set()
    pending: list = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if isinstance(current, BaseException):
            pending += [*current.args, getattr(current, "reason", None), current.__context__]
    return False


def _mask(*secrets: str) -> None:
    """Register secrets with Airflow's log masker so they never reach task logs."""
    for secret in secrets:
        mask_secret(secret)
