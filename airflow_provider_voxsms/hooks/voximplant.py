"""VoximplantHook and VoximplantAsyncHook: a connection turned into an authenticated, pooled client.

Both follow one request policy (``hooks.policy``: form encoding, answer parsing, error types,
retries, the pause after throttling) and read the connection one way (``hooks.connection``);
they differ only in transport: requests for the blocking hook, ``httpx.AsyncClient`` for the
async one, whose blocking set-up (connection fields, credentials, PEM key, CA certificates)
runs in a thread so that an event loop (the triggerer's) never waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import cached_property
from typing import Any

import httpx
import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from tenacity import AsyncRetrying, Retrying
from urllib3.exceptions import NewConnectionError

from airflow_provider_voxsms import UI_FIELD_BEHAVIOUR
from airflow_provider_voxsms.auth import ServiceAccountCredentials, TokenSigner
from airflow_provider_voxsms.errors import VoximplantError, VoximplantTransportError
from airflow_provider_voxsms.hooks.connection import (
    DEFAULT_BASE_URL,
    ConnectionSettings,
    validate_base_url,
)
from airflow_provider_voxsms.hooks.policy import (
    FORM_CONTENT_TYPE,
    READ_ONLY_METHODS,
    FirstContact,
    PauseGate,
    RetryPolicy,
    certificate_error,
    certificate_rejected,
    cut_timeout,
    encode_form,
    parse_answer,
    transport_error,
)
from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE, A2PSendSmsResponse

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_NUMBERS_PER_REQUEST",
    "READ_ONLY_METHODS",
    "VoximplantAsyncHook",
    "VoximplantBaseHook",
    "VoximplantHook",
    "validate_base_url",
]

MAX_NUMBERS_PER_REQUEST = MAX_BATCH_SIZE
# The async hook parses answers larger than this in one thread for the process: a history page
# of 1,000 rows is ~270 KB and ~5 ms of parsing, and the answers of every call in flight on a
# loop (a triggerer's, shared by every deferred task) would be parsed back to back on it.
LARGE_ANSWER_BYTES = 32 * 1024
_PARSING = ThreadPoolExecutor(1, thread_name_prefix="voxsms-answers")


def _no_bound() -> None:  # a call after the API's first answer: the policy's timeouts only
    return None


# The read-only call that tells a host that lost one request from one that never answers.
PROBE_METHOD = "GetAccountInfo"


class VoximplantBaseHook(BaseHook):
    """What both hooks share: the connection type, the parameters, one retry policy and one
    pause gate per hook, and the connection form.

    :param voximplant_conn_id: Airflow connection of type ``voximplant``.
    :param max_attempts: attempts per call, the first included, before a throttling or
        connection failure is raised.
    :param backoff_initial_s: first back-off wait; it doubles per attempt, with jitter.
    :param backoff_max_s: cap on one back-off wait.
    :param connect_timeout_s: how long to wait for a TCP/TLS connection.
    :param read_timeout_s: how long to wait for an answer; defaults to the connection's
        ``timeout`` extra, else 60 s.
    :param pool_size: connections kept open; at least the calls made at once.
    :param first_contact_s: until the API has answered this hook once, how long a call may
        take to reach it: connection failures are retried only within this time, and an answer
        is awaited at most this long; then the call fails with one error naming the host (a
        wrong Host fails in seconds, not after minutes of back-off). Calls wait for that first
        answer one at a time. After it, only the parameters above apply. None: no such bound.
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
        first_contact_s: float | None = 15.0,
    ):
        super().__init__()
        self.voximplant_conn_id = voximplant_conn_id
        self.policy = RetryPolicy(max_attempts, backoff_initial_s, backoff_max_s)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.pool_size = pool_size
        self._pause = PauseGate()
        self._contact = FirstContact(first_contact_s)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout (what provider info declares under ui-field-behaviour)."""
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    def read_settings(self) -> ConnectionSettings:
        """The connection, read now (blocking), as lazily loaded settings."""
        return ConnectionSettings(
            self.get_connection(self.voximplant_conn_id),
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )


class VoximplantHook(VoximplantBaseHook):
    """Calls Voximplant's Management API with a service account's credentials.

    One hook holds one parsed key, one cached token and one pooled HTTP session, and is safe to
    share between threads. What is retried is :class:`~hooks.policy.RetryPolicy`'s rule: a
    request that may have been processed (read timeout, connection reset after sending, HTTP
    5xx) of a method that sends raises :class:`VoximplantTransportError` or
    :class:`VoximplantHttpError` and is never re-sent, so an SMS cannot go out twice. The
    parameters are :class:`VoximplantBaseHook`'s.
    """

    # -- connection -> settings (read lazily, once) ----------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        return self.read_settings()

    @cached_property
    def base_url(self) -> str:
        return self.settings.base_url

    @cached_property
    def credentials(self) -> ServiceAccountCredentials:
        return self.settings.credentials

    @cached_property
    def signer(self) -> TokenSigner:
        return self.settings.signer

    @cached_property
    def timeout(self) -> tuple[float, float]:
        return self.settings.timeout

    @cached_property
    def verify(self) -> str | bool:
        return self.settings.verify

    @cached_property
    def session(self) -> requests.Session:
        """One pooled session for every call of this hook."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def check_config(self) -> None:
        """Read the connection and load the key now, so that a bad URL, missing connection or
        unusable credentials fail with their clear error before anything is sent."""
        _ = self.base_url, self.timeout, self.signer

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict:
        """Call a Management API method and return its JSON answer.

        Parameters go in a form-encoded body of ``POST <base>/<method>`` (``policy.encode_form``),
        so message texts stay out of URLs and access logs. Raises :class:`VoximplantApiError`
        for an ``{"error": ...}`` answer.
        """
        body, contact = encode_form(params), self._contact
        if not contact.answered:
            seen = contact.failures
            with contact.lock:  # one call at a time until the API first answers
                if not contact.answered:
                    contact.waited_for_failure(method, seen)
                    return self._first_call(method, body)
        retrying = Retrying(**self.policy.tenacity_args(method, self._pause, self.log))
        return retrying(self._post, method, body)

    def _first_call(self, method: str, body: str) -> dict:
        contact = self._contact
        started = contact.start()
        args = self.policy.tenacity_args(method, self._pause, self.log, contact.bound)
        try:
            return Retrying(**args)(self._post, method, body, contact.bound)
        except VoximplantTransportError as error:
            if contact.answered or (error.maybe_processed and self._host_answers(method)):
                raise
            raise contact.failed(method, error, self.base_url, started) from None

    def _host_answers(self, method: str) -> bool:
        """Whether the host answers a read-only call before the first contact's deadline, after
        ``method``'s request got no answer: a host that answers others only lost that request
        (an ambiguous answer, settled as any other), it is not one that never answers."""
        if method == PROBE_METHOD:
            return False
        with suppress(VoximplantError):  # an error answer is an answer too: _post notes it
            self._post(PROBE_METHOD, "", self._contact.bound)
        return self._contact.answered

    def a2p_send_sms(
        self, src_number: str, dst_numbers: list[str], text: str, store_body: bool = False
    ) -> A2PSendSmsResponse:
        """Send one A2P SMS request to at most 100 numbers (digits only, international format)."""
        params = send_sms_params(src_number, dst_numbers, text, store_body)
        return send_sms_response(self.call("A2PSendSms", **params))

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

    def _post(self, method: str, body: str, bound: Callable[[], float | None] = _no_bound) -> dict:
        self._pause.wait()
        headers = {
            "Authorization": f"Bearer {self.signer.token()}",
            "Content-Type": FORM_CONTENT_TYPE,
        }
        url = f"{self.base_url}/{method}"
        try:
            response = self.session.post(
                url,
                data=body,
                headers=headers,
                timeout=cut_timeout(self.timeout, bound()),
                verify=self.verify,
            )
        except requests.exceptions.SSLError as err:
            if not certificate_rejected(err):  # a TLS failure later on may follow the request
                raise transport_error(method, err, self.base_url, never_sent=False) from None
            raise certificate_error(self.base_url) from None
        except requests.RequestException as err:
            raise _requests_error(method, err, self.base_url) from None
        self._contact.answered = True
        return parse_answer(method, response.status_code, response.content, response.headers)


class VoximplantAsyncHook(VoximplantBaseHook):
    """The same API as :class:`VoximplantHook`, awaitable, over one pooled ``httpx.AsyncClient``.

    Same connection, parameters, retries and errors as the blocking hook. The first call (or
    :meth:`check_config`) reads the connection and loads the credentials, the key and the TLS
    context in a thread; calls made meanwhile wait for that one set-up. A throttling answer
    pauses every call of the hook for its back-off. One hook belongs to one event loop; close
    it with :meth:`aclose` or ``async with``.

    :param transport: an httpx transport to send through instead of the network (tests:
        ``httpx.MockTransport``).

    The other parameters are :class:`VoximplantBaseHook`'s.
    """

    hook_name = "Voximplant (async)"

    def __init__(
        self,
        voximplant_conn_id: str = VoximplantBaseHook.default_conn_name,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **params: Any,
    ):
        super().__init__(voximplant_conn_id, **params)
        self._transport = transport
        self._ready: asyncio.Future[tuple[ConnectionSettings, httpx.AsyncClient]] | None = None
        self._contact_lock: asyncio.Lock | None = None  # made on the hook's event loop

    async def check_config(self) -> ConnectionSettings:
        """Read the connection and load the key and TLS context (in a thread), once; a bad
        URL, missing connection or unusable credentials raise their clear error here."""
        return (await self._set_up())[0]

    async def call(self, method: str, **params: Any) -> dict:
        """:meth:`VoximplantHook.call`, awaited."""
        settings, _ = await self._set_up()
        body, contact = encode_form(params), self._contact
        if not contact.answered:
            seen = contact.failures
            self._contact_lock = self._contact_lock or asyncio.Lock()
            async with self._contact_lock:  # one call at a time until the API first answers
                if not contact.answered:
                    contact.waited_for_failure(method, seen)
                    return await self._first_call(method, body, settings.base_url)
        retrying = AsyncRetrying(**self.policy.tenacity_args(method, self._pause, self.log))
        return await retrying(self._post, method, body)

    async def _first_call(self, method: str, body: str, base_url: str) -> dict:
        contact = self._contact
        started = contact.start()
        args = self.policy.tenacity_args(method, self._pause, self.log, contact.bound)
        try:
            return await AsyncRetrying(**args)(self._post, method, body, contact.bound)
        except VoximplantTransportError as error:
            if contact.answered or (error.maybe_processed and await self._host_answers(method)):
                raise
            raise contact.failed(method, error, base_url, started) from None

    async def _host_answers(self, method: str) -> bool:
        """:meth:`VoximplantHook._host_answers`, awaited."""
        if method == PROBE_METHOD:
            return False
        with suppress(VoximplantError):
            await self._post(PROBE_METHOD, "", self._contact.bound)
        return self._contact.answered

    async def a2p_send_sms(
        self, src_number: str, dst_numbers: list[str], text: str, store_body: bool = False
    ) -> A2PSendSmsResponse:
        """:meth:`VoximplantHook.a2p_send_sms`, awaited."""
        params = send_sms_params(src_number, dst_numbers, text, store_body)
        return send_sms_response(await self.call("A2PSendSms", **params))

    async def a2p_get_sms_history(self, **filters: Any) -> dict:
        """:meth:`VoximplantHook.a2p_get_sms_history`, awaited."""
        return await self.call("A2PGetSmsHistory", **filters)

    async def get_account_info(self) -> dict:
        return (await self.call("GetAccountInfo")).get("result", {})

    async def aclose(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and ready.done() and not ready.cancelled() and not ready.exception():
            await ready.result()[1].aclose()

    async def __aenter__(self) -> VoximplantAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- set-up and transport -----------------------------------------------------------------

    async def _set_up(self) -> tuple[ConnectionSettings, httpx.AsyncClient]:
        ready = self._ready
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            self._ready = asyncio.ensure_future(self._load())
        return await asyncio.shield(self._ready)

    async def _load(self) -> tuple[ConnectionSettings, httpx.AsyncClient]:
        return await asyncio.to_thread(self._load_blocking)

    def _load_blocking(self) -> tuple[ConnectionSettings, httpx.AsyncClient]:
        # Even aget_connection would hold the loop: it loads the secrets backends and parses
        # the connection on it (0.1-0.2 s seen in the first call of a process).
        settings = self.read_settings().load()
        settings.signer.token()  # the first token: signing and masking it block too
        connect, read = settings.timeout
        pool = httpx.Limits(
            max_connections=self.pool_size, max_keepalive_connections=self.pool_size
        )
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(read, connect=connect),
            limits=pool,
            verify=settings.ssl_context,  # loads CA certificates: here, in the thread
            transport=self._transport,
        )
        return settings, client

    async def _post(
        self, method: str, body: str, bound: Callable[[], float | None] = _no_bound
    ) -> dict:
        await self._pause.wait_async()
        settings, client = await self._set_up()
        signer = settings.signer
        token = signer.cached() or await asyncio.to_thread(signer.token)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": FORM_CONTENT_TYPE}
        timeout = client.timeout
        if (deadline := bound()) is not None:
            connect, read = cut_timeout(settings.timeout, deadline)
            timeout = httpx.Timeout(read, connect=connect)
        try:
            response = await client.post(
                f"{settings.base_url}/{method}", content=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as err:
            if certificate_rejected(err):
                raise certificate_error(settings.base_url) from None
            never_sent = isinstance(
                err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            raise transport_error(method, err, settings.base_url, never_sent=never_sent) from None
        self._contact.answered = True
        answer = (method, response.status_code, response.content, response.headers)
        if len(response.content) > LARGE_ANSWER_BYTES:
            return await asyncio.get_running_loop().run_in_executor(_PARSING, parse_answer, *answer)
        return parse_answer(*answer)


def send_sms_params(
    src_number: str, dst_numbers: list[str], text: str, store_body: bool
) -> dict[str, Any]:
    """A2PSendSms's parameters; at most 100 numbers per request."""
    if not 1 <= len(dst_numbers) <= MAX_NUMBERS_PER_REQUEST:
        raise ValueError(
            f"A2PSendSms takes 1..{MAX_NUMBERS_PER_REQUEST} numbers per request, "
            f"got {len(dst_numbers)}; split the list into batches."
        )
    return {
        "src_number": src_number,
        "dst_numbers": list(dst_numbers),
        "text": text,
        "store_body": store_body,
    }


def send_sms_response(answer: dict) -> A2PSendSmsResponse:
    return A2PSendSmsResponse(
        result=list(answer.get("result") or []),
        failed=list(answer.get("failed") or []),
        fragments_count=int(answer.get("fragments_count") or 0),
    )


def _requests_error(
    method: str, err: requests.RequestException, base_url: str
) -> VoximplantTransportError:
    reason = getattr(err.args[0], "reason", None) if err.args else None
    never_sent = isinstance(err, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    return transport_error(method, err, base_url, never_sent=never_sent)
