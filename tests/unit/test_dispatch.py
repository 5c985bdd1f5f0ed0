"""dispatch(): concurrency, stopping, and the outcome of every number under each kind of error."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from airflow_provider_voxsms.errors import (
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.sms import dispatch as dispatch_module
from airflow_provider_voxsms.sms.dispatch import RateLimiter, dispatch
from airflow_provider_voxsms.sms.model import A2PSendSmsResponse, Batch


def make_batches(count: int, size: int = 3) -> list[Batch]:
    return [
        Batch(index=i, text="hi", numbers=tuple(f"4470000{i:04d}{j:02d}" for j in range(size)))
        for i in range(count)
    ]


def accept_all(batch: Batch) -> A2PSendSmsResponse:
    result = [
        {"message_id": batch.index * 1000 + i, "destination_number": n}
        for i, n in enumerate(batch.numbers)
    ]
    return A2PSendSmsResponse(result=result, failed=[], fragments_count=2)


def numbers_of(report, kind: str) -> list[str]:
    return [row[0] for outcome in report.outcomes for row in getattr(outcome, kind)]


def test_every_number_is_accepted_once_and_concurrency_is_bounded():
    in_flight, peak, lock = 0, 0, threading.Lock()

    def send(batch):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.005)
        with lock:
            in_flight -= 1
        return accept_all(batch)

    batches = make_batches(40)
    seen: list[int] = []
    report = dispatch(
        batches,
        send,
        total_numbers=120,
        max_concurrency=4,
        on_outcome=lambda o: seen.append(o.batch.index),
    )
    accepted = numbers_of(report, "accepted")
    assert sorted(accepted) == sorted(n for b in batches for n in b.numbers)
    assert len(set(accepted)) == 120
    assert 1 < peak <= 4
    assert sorted(seen) == list(range(40))
    assert report.stopped_by is None
    assert sum(o.fragments for o in report.outcomes) == 240


def test_per_number_failures_and_numbers_missing_from_the_answer():
    def send(batch):
        first, second, _third = batch.numbers
        return A2PSendSmsResponse(
            result=[{"message_id": 1, "destination_number": first}],
            failed=[{"destination_number": second, "error_code": 509, "error_description": "off"}],
            fragments_count=1,
        )

    report = dispatch(make_batches(1), send, total_numbers=3)
    (outcome,) = report.outcomes
    assert outcome.accepted == [(outcome.batch.numbers[0], 1)]
    assert outcome.failed == [(outcome.batch.numbers[1], 509, "off")]
    assert outcome.unknown == [(outcome.batch.numbers[2], "not in the API's answer")]


def test_fatal_error_stops_the_run_promptly_and_accounts_for_every_number():
    calls = 0

    def send(batch):
        nonlocal calls
        calls += 1
        if batch.index >= 5:
            raise VoximplantApiError("A2PSendSms", 127, "Insufficient money")
        return accept_all(batch)

    batches = make_batches(200)
    report = dispatch(batches, send, total_numbers=600, max_concurrency=1)
    assert isinstance(report.stopped_by, VoximplantApiError) and report.stopped_by.code == 127
    assert calls == 6, "no request is sent after the stop"
    assert len(numbers_of(report, "accepted")) == 15
    not_sent = numbers_of(report, "not_sent")
    assert len(not_sent) == 600 - 15 and numbers_of(report, "failed") == []
    assert not any(o.retry_later for o in report.outcomes), "a stop is not sent again"
    assert sorted(numbers_of(report, "accepted") + not_sent) == sorted(
        n for b in batches for n in b.numbers
    )


def test_ambiguous_transport_error_is_unknown_and_does_not_stop():
    def send(batch):
        if batch.index == 1:
            raise VoximplantTransportError("A2PSendSms", "reset", maybe_processed=True)
        return accept_all(batch)

    report = dispatch(make_batches(3), send, total_numbers=9)
    assert report.stopped_by is None
    assert len(numbers_of(report, "unknown")) == 3
    assert len(numbers_of(report, "accepted")) == 6


@pytest.mark.parametrize(
    ("error", "kind", "retry_later", "stops"),
    [
        (VoximplantHttpError("A2PSendSms", 429, "slow"), "not_sent", True, False),
        (VoximplantHttpError("A2PSendSms", 500, "oops"), "unknown", False, False),
        (VoximplantHttpError("A2PSendSms", 404, "no such path"), "not_sent", False, True),
        # no connection to an API this run never reached: a wrong host, stop
        (
            VoximplantTransportError("A2PSendSms", "refused", maybe_processed=False),
            "not_sent",
            False,
            True,
        ),
        (VoximplantApiError("A2PSendSms", 385, "Sending SMS error"), "failed", False, False),
        (VoximplantApiError("A2PSendSms", 507, "Invalid src_number"), "not_sent", False, True),
        (VoximplantApiError("A2PSendSms", 433, "Invalid key id"), "not_sent", False, True),
        (VoximplantApiError("A2PSendSms", 104, "Forbidden"), "not_sent", False, True),
        (VoximplantApiError("A2PSendSms", 456, "Token expired"), "not_sent", False, True),
    ],
)
def test_whole_request_errors(error, kind, retry_later, stops):
    def send(batch):
        raise error

    report = dispatch(make_batches(1), send, total_numbers=3)
    (outcome,) = report.outcomes
    assert outcome.sent is (kind != "not_sent")
    assert len(getattr(outcome, kind)) == 3
    assert outcome.retry_later is retry_later
    assert (report.stopped_by is error) is stops


def test_no_connection_after_the_api_answered_is_sent_again_later_not_a_stop():
    def send(batch):
        if batch.index == 0:
            return accept_all(batch)
        raise VoximplantTransportError("A2PSendSms", "refused", maybe_processed=False)

    report = dispatch(make_batches(3), send, total_numbers=9, max_concurrency=1)
    assert report.stopped_by is None
    assert [o.retry_later for o in report.outcomes] == [False, True, True]
    assert len(numbers_of(report, "not_sent")) == 6


def test_rate_limiter_spaces_request_starts(monkeypatch):
    now = [100.0]
    sleeps: list[float] = []

    def fake_sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(dispatch_module.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(dispatch_module.time, "sleep", fake_sleep)
    limiter = RateLimiter(per_second=4)
    for _ in range(5):
        limiter.acquire()
    assert sleeps == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert RateLimiter(None)._interval == 0.0


def test_progress_lines(caplog):
    logger = logging.getLogger("voxsms-test-progress")
    with caplog.at_level(logging.INFO, logger=logger.name):
        dispatch(
            make_batches(5), accept_all, total_numbers=15, progress_interval_s=0, logger=logger
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress")]
    assert len(lines) >= 5
    assert "15/15 numbers (100%)" in lines[-1] and "failed or not sent 0, unknown 0" in lines[-1]
