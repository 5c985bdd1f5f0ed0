"""The request policy both hooks follow, whatever their transport (requests or httpx).

What goes on the wire (:func:`encode_form`), how an answer is read (:func:`parse_answer`), which
failures are retried and how long to wait (:class:`RetryPolicy`), the pause every request of
a hook keeps after a throttling answer (:class:`PauseGate`), and the bound on reaching a host
that has not answered yet (:class:`FirstContact`). A hook only adds its transport: it
posts the body, maps its library's network errors with :func:`transport_error`, and runs
``tenacity`` with :meth:`RetryPolicy.tenacity_args`, so ``VoximplantHook`` and
``VoximplantAsyncHook`` cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from airflow_provider_voxsms.errors import (
    ConfigurationError,
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
    is_throttling,
)

# Methods that only read: repeating one can never send an SMS, so every failure is retried.
READ_ONLY_METHODS = frozenset({"GetAccountInfo", "A2PGetSmsHistory"})
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


# -- the request -------------------------------------------------------------------------------


def encode_form(params: Mapping[str, Any]) -> str:
    """The form body of a call: ``None`` values left out, lists joined with ``;``, booleans as
    ``true``/``false``, datetimes as UTC ``yyyy-MM-dd HH:mm:ss``; the bytes requests' urlencode
    would send, faster (``dst_numbers``, digits and ``;`` only, is encoded with one replace)."""
    return "&".join(
        f"{quote_plus(key)}={_quote(form_value(value))}"
        for key, value in params.items()
        if value is not None
    )


def form_value(value: Any) -> str:
    """One parameter as the API reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set):
        return ";".join(str(item) for item in value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _quote(value: str) -> str:
    digits = value.replace(";", "")
    if digits.isascii() and digits.isdigit():
        return value.replace(";", "%3B")
    return quote_plus(value)


# -- the answer --------------------------------------------------------------------------------


def parse_answer(method: str, status: int, content: bytes, headers: Mapping[str, str]) -> dict:
    """The JSON object of a 200 answer; else :class:`VoximplantHttpError` (another status, or a
    body that is not a JSON object, with ``Retry-After`` when given) or
    :class:`VoximplantApiError` (an ``{"error": {...}}`` answer)."""
    try:
        answer = json.loads(content)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        text = content.decode("utf-8", "replace")
        raise VoximplantHttpError(method, status, text, _retry_after(headers))
    if isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise VoximplantApiError(method, _int(error.get("code")), str(error.get("msg", "")))
    return answer


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


# -- network failures ----------------------------------------------------------------------------


CHECK_HOST = "check the connection's Host and that this worker can reach it"


def transport_error(
    method: str, error: BaseException, base_url: str, *, never_sent: bool
) -> VoximplantTransportError:
    """A network failure as the one error type callers handle: ``maybe_processed`` unless the
    connection provably never opened."""
    if never_sent:
        what = f"could not connect to {base_url} ({type(error).__name__}): {CHECK_HOST}"
    else:
        what = f"no answer (the request may have been processed): {type(error).__name__}"
    failure = VoximplantTransportError(method, what, maybe_processed=not never_sent)
    failure.cause = type(error).__name__
    return failure


def certificate_rejected(error: BaseException) -> bool:
    """True when the server's certificate was refused: the handshake failed, nothing was sent
    (searched through the error's arguments, causes and contexts, as libraries wrap it)."""
    seen: set[int] = set()
    pending: list = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if isinstance(current, BaseException):
            pending += [
                *current.args,
                getattr(current, "reason", None),
                current.__cause__,
                current.__context__,
            ]
    return False


def certificate_error(base_url: str) -> ConfigurationError:
    return ConfigurationError(
        f"TLS certificate verification of {base_url} failed, so nothing was sent. "
        "If the server uses a private CA (or is the emulator), set the connection extra "
        "'ca_bundle' to that CA's certificate file."
    )


# -- retries -------------------------------------------------------------------------------------


class PauseGate:
    """A shared "not before" time: one throttled request pauses every request of the hook
    (threads of the blocking hook, tasks of the async one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self._until - time.monotonic()

    def wait(self) -> None:
        while (delay := self.remaining()) > 0:
            time.sleep(delay)

    async def wait_async(self) -> None:
        while (delay := self.remaining()) > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class RetryPolicy:
    """What is retried, how often, and how long to wait.

    Retried: throttling answers (HTTP 429 and 503, API errors 314, 340 and 416), which mean the
    request was not processed; connections that could not be opened; and, for read-only
    methods, any network or server failure. A request that may have been processed (read
    timeout, connection reset after sending, HTTP 5xx) of a method that changes something is
    never repeated, so an SMS cannot go out twice.

    :param max_attempts: attempts per call, the first included.
    :param backoff_initial_s: first wait; it doubles per attempt, with jitter (half to all).
    :param backoff_max_s: cap on one wait, also on a wait the API names ("Repeat after N").
    """

    max_attempts: int = 8
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def retryable(self, method: str, error: BaseException) -> bool:
        if is_throttling(error):
            return True
        read_only = method in READ_ONLY_METHODS
        if isinstance(error, VoximplantTransportError):
            return read_only or not error.maybe_processed
        return read_only and isinstance(error, VoximplantHttpError) and error.status >= 500

    def delay(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        hinted = getattr(error, "retry_after", None)
        if hinted is None:
            ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
            hinted = random.uniform(ceiling / 2, ceiling)
        return min(float(hinted), self.backoff_max_s)

    def tenacity_args(
        self,
        method: str,
        pause: PauseGate,
        log: logging.Logger,
        bound: Callable[[], float | None] | None = None,
    ) -> dict:
        """Arguments for ``tenacity.Retrying`` or ``AsyncRetrying``: one retry loop, either way.
        A throttling answer also holds ``pause`` for its wait. While ``bound()`` gives a
        deadline (a ``time.monotonic()`` value: :meth:`FirstContact.bound`), no wait or attempt
        starts after it."""

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            delay = self.delay(state.attempt_number, error)
            if (deadline := bound and bound()) is not None:
                delay = max(0.0, min(delay, deadline - time.monotonic() - MIN_ATTEMPT_S))
            if error is not None and is_throttling(error):
                pause.hold(delay)
            return delay

        def past_deadline(state: RetryCallState) -> bool:
            if (deadline := bound and bound()) is None:
                return False
            return time.monotonic() + (state.upcoming_sleep or 0.0) + MIN_ATTEMPT_S > deadline

        def log_backoff(state: RetryCallState) -> None:
            log.warning(
                "Voximplant back-off: %s; attempt %d of %d, waiting %.1f s",
                state.outcome.exception() if state.outcome else None,
                state.attempt_number,
                self.max_attempts,
                state.upcoming_sleep,
            )

        return {
            "retry": retry_if_exception(lambda error: self.retryable(method, error)),
            "stop": stop_after_attempt(self.max_attempts) | past_deadline,
            "wait": wait,
            "before_sleep": log_backoff,
            "reraise": True,
        }


# -- a host that has not answered yet -----------------------------------------------------------

# An attempt is not started with less time than this left before a deadline.
MIN_ATTEMPT_S = 0.5


class FirstContact:
    """Until the API has answered a hook once, a host that never answers fails in
    ``budget_s``, once, instead of after every call's full back-off.

    A wrong Host (a closed port, a name that does not resolve, a server that accepts and never
    answers) would otherwise cost each concurrent call all its attempts: minutes of back-off
    and a warning per attempt per call. So until the first answer (any HTTP answer, an error
    too) calls go one at a time; the one in flight retries connection failures only until
    ``budget_s`` has passed and waits at most that long for its answer (its timeouts are cut
    to what is left); and when it fails, the calls that waited for it, and those made within
    ``budget_s`` after it, fail at once with its error (they are not sent). A call made later
    tries again (a trigger's next round, say). After the first answer none of this applies:
    throttling, 5xx answers and lost connections are retried as :class:`RetryPolicy` says.

    The hooks hold a lock (``lock``, or the async hook's on its event loop) around a first
    call, which :meth:`start` opens and :meth:`bound` limits (until an answer comes: then its
    own retries, of a throttling answer say, are the policy's); :meth:`failed` turns its error
    into the one to raise.
    """

    def __init__(self, budget_s: float | None):
        self.budget_s = budget_s
        self.answered = budget_s is None  # no bound: every call is an ordinary one
        self.failures = 0  # first calls that failed; a waiting call compares it
        self.failure: VoximplantTransportError | None = None
        self.failed_at = 0.0
        self.until = 0.0  # the deadline of the first call in flight
        self.lock = threading.Lock()  # the blocking hook's; the async hook keeps its own

    def start(self) -> float:
        """Open a first call: its deadline is ``budget_s`` from now; returns now."""
        now = time.monotonic()
        self.until = now + float(self.budget_s or 0.0)
        return now

    def bound(self) -> float | None:
        """The deadline of the first call in flight; None once the API has answered."""
        return None if self.answered else self.until

    def waited_for_failure(self, method: str, failures_seen: int) -> None:
        """Raise for a call that waited while the call in flight failed, or came soon after:
        it is not sent."""
        if self.failure is None:
            return
        recent = time.monotonic() - self.failed_at < float(self.budget_s or 0.0)
        if self.failures != failures_seen or recent:
            reason = self.failure.reason
            if self.failure.maybe_processed:  # this call's request, unlike that one, was not sent
                reason = f"not sent, as {reason}"
            raise VoximplantTransportError(method, reason, maybe_processed=False)

    def failed(
        self, method: str, error: VoximplantTransportError, base_url: str, started: float
    ) -> VoximplantTransportError:
        """The one error of a first call that got no answer: it names the host and what to do."""
        waited = time.monotonic() - started
        cause = error.cause or "no connection"
        if error.maybe_processed:
            what = (
                f"{base_url} sent no answer within {waited:.1f} s ({cause}; the request may have "
                f"been processed, and the host has not answered this hook yet): {CHECK_HOST}"
            )
        else:
            what = (
                f"could not connect to {base_url} ({cause}) for {waited:.1f} s, so nothing "
                f"was sent: {CHECK_HOST}"
            )
        self.failure = VoximplantTransportError(method, what, maybe_processed=error.maybe_processed)
        self.failures += 1
        self.failed_at = time.monotonic()
        return self.failure


def cut_timeout(timeout: tuple[float, float], deadline: float | None) -> tuple[float, float]:
    """(connect, read) timeouts cut to what is left before ``deadline``."""
    if deadline is None:
        return timeout
    left = max(MIN_ATTEMPT_S, deadline - time.monotonic())
    return min(timeout[0], left), min(timeout[1], left)
