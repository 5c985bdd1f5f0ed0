"""Concurrent sending of a plan's batches, with a rate cap, progress lines and exact per-number outcomes.

Each batch ends in exactly one of four ways: the API answered (its numbers are accepted or
failed one by one), the API refused the whole request, the request provably never reached the
API (``sent=False``: safe to send again later), or its fate is unknown (the connection broke
after sending: never re-sent here, reported as unknown).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from airflow_provider_voxsms.errors import (
    ConfigurationError,
    CredentialsError,
    VoximplantApiError,
    VoximplantError,
    VoximplantHttpError,
    VoximplantTransportError,
    is_throttling,
)
from airflow_provider_voxsms.hooks.voximplant import A2PSendSmsResponse
from airflow_provider_voxsms.sms.plan import Batch

log = logging.getLogger(__name__)

SendFn = Callable[[Batch], A2PSendSmsResponse]


@dataclass
class BatchOutcome:
    """What happened to one batch; ``sent`` is False only when the API provably never saw it."""

    batch: Batch
    sent: bool = True
    accepted: list[tuple[str, int]] = field(default_factory=list)  # (number, message_id)
    failed: list[tuple[str, int | None, str]] = field(default_factory=list)  # (number, code, why)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (number, why)
    fragments: int = 0
    owned: bool = True  # False: another try of the task holds these numbers; not ours to record


@dataclass
class DispatchReport:
    """Every batch's outcome, in completion order, and the error that stopped the run, if any."""

    outcomes: list[BatchOutcome]
    stopped_by: VoximplantError | None = None

    def count(self, kind: str) -> int:
        return sum(len(getattr(outcome, kind)) for outcome in self.outcomes)


def outcome_of(batch: Batch, response: A2PSendSmsResponse) -> BatchOutcome:
    """Match an answer to the batch, number by number; numbers it does not mention are unknown."""
    outcome = BatchOutcome(batch, fragments=0)
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


def outcome_of_error(batch: Batch, error: BaseException) -> BatchOutcome:
    """Turn a whole-request error into per-number outcomes."""
    if isinstance(error, VoximplantApiError) and not error.is_throttling:
        # The API looked at the request and refused it: nothing went out, and sending the same
        # numbers again would be refused the same way, so they count as failed, not unsent.
        failed = [(n, error.code, error.message) for n in batch.numbers]
        return BatchOutcome(batch, sent=not error.is_fatal, failed=failed)
    if is_throttling(error) or (
        isinstance(error, VoximplantTransportError) and not error.maybe_processed
    ):
        code = getattr(error, "code", None) or getattr(error, "status", None)
        failed = [(n, code, f"not sent: {error}") for n in batch.numbers]
        return BatchOutcome(batch, sent=False, failed=failed)
    if isinstance(error, VoximplantHttpError) and 400 <= error.status < 500:
        failed = [(n, error.status, f"not sent: {error}") for n in batch.numbers]
        return BatchOutcome(batch, sent=False, failed=failed)
    if isinstance(error, CredentialsError | ConfigurationError):
        # Raised while building the request (base URL, credentials, token): it never left here.
        failed = [(n, None, f"not sent: {error}") for n in batch.numbers]
        return BatchOutcome(batch, sent=False, failed=failed)
    reason = f"outcome unknown: {error}"
    return BatchOutcome(batch, unknown=[(n, reason) for n in batch.numbers])


def stops_the_run(error: BaseException) -> bool:
    """Errors that would repeat for every remaining batch: configuration, money, sender, text."""
    if isinstance(error, VoximplantApiError):
        return error.is_fatal
    if isinstance(error, VoximplantHttpError):
        return 400 <= error.status < 500 and not error.is_throttling
    # Credentials, configuration or a bug stop the run; a broken connection does not.
    return not isinstance(error, VoximplantTransportError)


def not_sent(batch: Batch, error: BaseException) -> BatchOutcome:
    code = getattr(error, "code", None) or getattr(error, "status", None)
    why = f"not sent: the run stopped after {error}"
    return BatchOutcome(batch, sent=False, failed=[(n, code, why) for n in batch.numbers])


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
        self.done += len(outcome.batch.numbers)
        self.failed += len(outcome.failed)
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
            "Progress: %d/%d numbers (%.0f%%), %.0f numbers/s, ETA %.0f s, failed %d, unknown %d",
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
    claim: Callable[[Batch], bool] | None = None,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    progress_interval_s: float = 10.0,
    logger: logging.Logger = log,
) -> DispatchReport:
    """Send every batch with ``send``, at most ``max_concurrency`` at once, and account for each.

    At most ``2 * max_concurrency`` batches are in flight or queued at any time, so a stop is
    prompt and memory stays flat. ``claim`` is called in the sending thread right before each
    request (a ledger commits the batch as in flight there; False means another try holds it,
    an exception stops the run). ``on_outcome`` is called from this thread for each batch.
    After an error that stops the run, batches that were not started are reported as failed
    with ``sent=False``.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    limiter = RateLimiter(requests_per_second)
    progress = Progress(total_numbers, progress_interval_s, logger)
    report = DispatchReport(outcomes=[])
    stop = threading.Event()

    def stop_after(error: BaseException) -> None:
        if report.stopped_by is None:
            report.stopped_by = error
        stop.set()

    def run(batch: Batch) -> BatchOutcome:
        if stop.is_set():
            return not_sent(batch, report.stopped_by)
        try:
            if claim is not None and not claim(batch):
                why = "held by another try of this task instance (see the send ledger)"
                return BatchOutcome(batch, unknown=[(n, why) for n in batch.numbers], owned=False)
        except Exception as error:
            stop_after(error)
            return not_sent(batch, error)
        limiter.acquire()
        try:
            return outcome_of(batch, send(batch))
        except Exception as error:
            if stops_the_run(error):
                stop_after(error)
            return outcome_of_error(batch, error)

    def finish(outcome: BatchOutcome) -> None:
        report.outcomes.append(outcome)
        if on_outcome and outcome.owned:
            on_outcome(outcome)
        progress.add(outcome)

    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="voxsms") as pool:
        for batch in batches:
            if stop.is_set():
                finish(not_sent(batch, report.stopped_by))
                continue
            pending.add(pool.submit(run, batch))
            if len(pending) >= 2 * max_concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(future.result())
        for future in pending:
            finish(future.result())
    progress.log_line()
    return report
