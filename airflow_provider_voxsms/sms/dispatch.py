"""Concurrent sending of batches, with a rate cap, progress lines and exact per-number outcomes.

Each batch ends in exactly one of four ways: the API answered (its numbers are accepted or
failed one by one), the API refused the whole request (failed), the request provably never
reached the API (``not_sent``: safe to send again), or its fate is unknown (the connection
broke or the server failed after the request was written). Settling the unknown and re-sending
the unsent is the campaign's job (``sms/campaign.py``), not this module's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from airflow_provider_voxsms.errors import (
    InputError,
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
    is_throttling,
)
from airflow_provider_voxsms.sms.model import A2PSendSmsResponse, Batch, BatchOutcome

log = logging.getLogger(__name__)

CAPPED_REASON = "frequency cap reached: not sent (see frequency_cap)"
EXPIRED_REASON = "validity period over before it was sent (see validity_period)"

SendFn = Callable[[Batch], A2PSendSmsResponse]


@dataclass
class Dispatched:
    """Every batch's outcome, in completion order, and the error that stopped the run, if any."""

    outcomes: list[BatchOutcome]
    stopped_by: BaseException | None = None


def outcome_of(batch: Batch, response: A2PSendSmsResponse) -> BatchOutcome:
    """Match an answer to the batch, number by number; numbers it does not mention are unknown."""
    outcome = BatchOutcome(batch)
    pending = set(batch.numbers)
    for row in response.result:
        number = str(row.get("destination_number", ""))
        if number in pending:
            pending.discard(number)
            outcome.accepted.append((number, int(row["message_id"])))
    for row in response.failed:
        number = str(row.get("destination_number", ""))
        if number in pending:
            pending.discard(number)
            code = row.get("error_code")
            outcome.failed.append(
                (number, int(code) if code is not None else None, str(row.get("error_description")))
            )
    outcome.unknown = [(n, "not in the API's answer") for n in batch.numbers if n in pending]
    outcome.fragments = response.fragments_count * len(outcome.accepted)
    return outcome


def never_reached_api(error: BaseException) -> bool:
    """True when the request provably was not processed: throttled, or no connection opened."""
    return is_throttling(error) or (
        isinstance(error, VoximplantTransportError) and not error.maybe_processed
    )


def outcome_of_error(batch: Batch, error: BaseException, *, stops: bool) -> BatchOutcome:
    """Turn a whole-request error into per-number outcomes (``stops``: it stopped the run)."""
    code = getattr(error, "code", None) or getattr(error, "status", None)
    if isinstance(error, VoximplantApiError) and not error.is_throttling and not stops:
        # The API looked at the request and refused it for these numbers.
        return BatchOutcome(batch, failed=[(n, error.code, error.message) for n in batch.numbers])
    if stops or never_reached_api(error) or isinstance(error, InputError):
        # Nothing went out: a stop (refused for every batch), throttling past the hook's
        # attempts, no connection, or a request that could not even be built.
        why = f"not sent: {error}"
        return BatchOutcome(
            batch, not_sent=[(n, code, why) for n in batch.numbers], retry_later=not stops
        )
    reason = f"outcome unknown: {error}"
    return BatchOutcome(batch, unknown=[(n, reason) for n in batch.numbers])


def stops_the_run(error: BaseException, *, api_reached: bool) -> bool:
    """Errors that would repeat for every remaining batch: authentication, configuration,
    money, sender, text, an HTTP 4xx, and a connection that cannot be opened to an API this
    run has not reached at all (a wrong host)."""
    if isinstance(error, VoximplantApiError):
        return error.is_fatal
    if isinstance(error, VoximplantHttpError):
        return 400 <= error.status < 500 and not error.is_throttling
    if isinstance(error, VoximplantTransportError):
        return not error.maybe_processed and not api_reached
    return True  # credentials, configuration or a bug


def not_started(batch: Batch, error: BaseException | None) -> BatchOutcome:
    code = getattr(error, "code", None) or getattr(error, "status", None)
    why = f"not sent: the run stopped after {error}"
    return BatchOutcome(batch, not_sent=[(n, code, why) for n in batch.numbers])


class RateLimiter:
    """Spaces request starts at least ``1 / per_second`` apart across all threads."""

    def __init__(self, per_second: float | None):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class Progress:
    """Logs done/total, rate, ETA and failures at most every ``interval_s`` seconds."""

    def __init__(self, total: int, interval_s: float, logger: logging.Logger):
        self.total, self.interval_s, self.log = total, interval_s, logger
        self.done = self.failed = self.unknown = 0
        self.started = self._last = time.monotonic()

    def add(self, outcome: BatchOutcome, force: bool = False) -> None:
        self.done += len(outcome.batch.numbers) + len(outcome.capped)
        self.failed += len(outcome.failed) + len(outcome.not_sent)
        self.unknown += len(outcome.unknown)
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self._last = now
            self.log_line(now)

    def log_line(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        self.log.info(
            "Progress: %d/%d numbers (%.0f%%), %.0f numbers/s, ETA %.0f s, failed or not sent %d, "
            "unknown %d",
            self.done,
            self.total,
            100.0 * self.done / self.total if self.total else 100.0,
            rate,
            eta,
            self.failed,
            self.unknown,
        )


def dispatch(
    batches: Iterable[Batch],
    send: SendFn,
    *,
    total_numbers: int,
    max_concurrency: int = 16,
    requests_per_second: float | None = None,
    claim: Callable[[Batch], Batch | None] | None = None,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    api_reached: threading.Event | None = None,
    expired: Callable[[], bool] | None = None,
    progress_interval_s: float = 10.0,
    logger: logging.Logger = log,
) -> Dispatched:
    """Send every batch with ``send``, at most ``max_concurrency`` at once, and account for each.

    At most ``2 * max_concurrency`` batches are in flight or queued at any time, so a stop is
    prompt and memory stays flat. ``claim`` is called in the sending thread right before each
    request (a ledger commits the batch as in flight there; False means another try holds it,
    an exception stops the run). ``on_outcome`` is called from this thread for each batch.
    ``api_reached`` is set once the API answers anything; pass the same event to every
    dispatch of a campaign, so that a connection failure after the API has answered is a
    batch to send again, not a wrong host that stops the run. After an error that stops the
    run, batches that were not started are ``not_sent``. A batch about to start once
    ``expired()`` says the campaign's validity period is over is ``expired``, not sent.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    limiter = RateLimiter(requests_per_second)
    progress = Progress(total_numbers, progress_interval_s, logger)
    result = Dispatched(outcomes=[])
    stop = threading.Event()
    api_reached = api_reached or threading.Event()

    def stop_after(error: BaseException) -> None:
        if result.stopped_by is None:
            result.stopped_by = error
        stop.set()

    def run(batch: Batch) -> BatchOutcome:
        if stop.is_set():
            return not_started(batch, result.stopped_by)
        if expired is not None and expired():
            return BatchOutcome(batch, expired=[(n, EXPIRED_REASON) for n in batch.numbers])
        capped: list[tuple[str, str]] = []
        try:
            claimed = claim(batch) if claim is not None else batch
            if claimed is None:
                why = "held by another try of this task instance (see the send ledger)"
                return BatchOutcome(batch, unknown=[(n, why) for n in batch.numbers], owned=False)
        except Exception as error:
            stop_after(error)
            return not_started(batch, error)
        if claimed.numbers != batch.numbers:  # the ledger refused some: a frequency cap
            kept = set(claimed.numbers)
            capped = [(n, CAPPED_REASON) for n in batch.numbers if n not in kept]
            if not claimed.numbers:
                return BatchOutcome(claimed, capped=capped)
        outcome = _sent(claimed)  # its batch is what was claimed (the ledger's record of it)
        outcome.capped = capped
        return outcome

    def _sent(batch: Batch) -> BatchOutcome:
        limiter.acquire()
        started = time.time()
        try:
            outcome = outcome_of(batch, send(batch))
            api_reached.set()
        except Exception as error:
            if isinstance(error, VoximplantApiError | VoximplantHttpError):
                api_reached.set()
            stops = stops_the_run(error, api_reached=api_reached.is_set())
            if stops:
                stop_after(error)
            outcome = outcome_of_error(batch, error, stops=stops)
        outcome.started_at, outcome.finished_at = started, time.time()
        return outcome

    def finish(outcome: BatchOutcome) -> None:
        result.outcomes.append(outcome)
        if on_outcome and outcome.owned:
            on_outcome(outcome)
        progress.add(outcome)

    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="voxsms") as pool:
        for batch in batches:
            if stop.is_set():
                finish(not_started(batch, result.stopped_by))
                continue
            pending.add(pool.submit(run, batch))
            if len(pending) >= 2 * max_concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(future.result())
        for future in pending:
            finish(future.result())
    progress.log_line()
    return result
