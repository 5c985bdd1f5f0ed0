"""One campaign: resume -> dispatch -> settle, ending in one report. The operator only calls it.

Settling happens in rounds. Before each, the campaign waits ``settle_delay_s``; then it looks
the open numbers (ambiguous answers, claims an earlier try left) up in the history, credits
those found as accepted, and sends again those the history shows never arrived, together with
batches that provably never reached the API (throttled past the hook's attempts). After
``settle_rounds`` rounds, what is still open is ``unknown`` or ``not_sent``. A run stopped by an
error that would repeat for every batch does not settle: it ends at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.dispatch import dispatch
from airflow_provider_voxsms.sms.model import (
    MAX_BATCH_SIZE,
    A2PSendSmsResponse,
    Batch,
    BatchOutcome,
    CampaignReport,
    bulk_objects,
)
from airflow_provider_voxsms.sms.plan import plan_batches
from airflow_provider_voxsms.sms.resume import Resumed, resume
from airflow_provider_voxsms.sms.settle import OpenNumber, SmsHistory, find_in_history

log = logging.getLogger(__name__)


class SmsApi(SmsHistory, Protocol):
    """The two API methods a campaign uses (``VoximplantHook`` has them)."""

    def a2p_send_sms(
        self, src_number: str, dst_numbers: list[str], text: str, store_body: bool = False
    ) -> A2PSendSmsResponse: ...


class Ledger(Protocol):
    """Where a campaign claims batches before sending and records outcomes (``SendLedger``)."""

    def claim(self, batch: Batch) -> bool: ...

    def record(self, outcome: BatchOutcome) -> None: ...


@dataclass(frozen=True)
class CampaignSettings:
    """How to send. ``settle_delay_s``: the wait before each settle round; ``settle_rounds``:
    how many rounds of history look-ups and re-sends before open numbers count as unknown."""

    src_number: str
    store_body: bool = False
    batch_size: int = MAX_BATCH_SIZE
    max_concurrency: int = 16
    requests_per_second: float | None = None
    settle_delay_s: float = 60.0
    settle_rounds: int = 3
    progress_interval_s: float = 10.0


def run_campaign(
    valid: pd.DataFrame,
    api: SmsApi,
    settings: CampaignSettings,
    *,
    ledger: Ledger | None = None,
    previous: pd.DataFrame | None = None,
    logger: logging.Logger = log,
    sleep: Callable[[float], None] = time.sleep,
    hold: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> CampaignReport:
    """Send ``valid`` (``phone``, ``text``; one row per message) and settle every number.

    :param ledger: claims each batch before it is sent and records each outcome.
    :param previous: what the ledger knows of earlier tries (``SendLedger.previous``).
    :param hold: given the rows still to send after resuming, which of them to keep back
        (a boolean mask; they end in ``report.held``). Earlier tries' outcomes are reported
        whatever it says, so a row sent in an earlier window stays accepted.
    """
    report = CampaignReport()
    with bulk_objects():
        resumed = (
            resume(valid, previous, settle_delay_s=settings.settle_delay_s)
            if previous is not None
            else Resumed(valid, None, [])
        )
    if resumed.settled is not None:
        report.outcomes.append(resumed.settled)
        report.earlier = len(resumed.settled.accepted) + len(resumed.settled.failed)
    to_send = _keep_back(resumed.to_send, hold, report)
    plan = plan_batches(to_send, settings.batch_size)
    if previous is not None and not previous.empty:
        logger.info(
            "Resuming from the send ledger: %d number(s) settled by earlier tries, %d left open "
            "by them (looked up in the history before anything is sent again), %d to send in "
            "%d request(s)",
            report.earlier,
            len(resumed.open_numbers),
            plan.recipients,
            len(plan.batches),
        )

    def send(batch: Batch) -> A2PSendSmsResponse:
        return api.a2p_send_sms(
            settings.src_number, list(batch.numbers), batch.text, settings.store_body
        )

    open_numbers, unsent = list(resumed.open_numbers), []
    api_reached = threading.Event()  # for the whole campaign: see dispatch()
    batches, rounds = plan.batches, 0
    while True:
        if batches:
            dispatched = dispatch(
                batches,
                send,
                total_numbers=sum(len(b.numbers) for b in batches),
                max_concurrency=settings.max_concurrency,
                requests_per_second=settings.requests_per_second,
                claim=ledger.claim if ledger else None,
                on_outcome=ledger.record if ledger else None,
                api_reached=api_reached,
                progress_interval_s=settings.progress_interval_s,
                logger=logger,
            )
            report.stopped_by = dispatched.stopped_by
            for outcome in dispatched.outcomes:
                report.outcomes.append(_settled_part(outcome, settings, open_numbers, unsent))
        if report.stopped_by is not None or rounds == settings.settle_rounds:
            break
        if not open_numbers and not unsent:
            break
        rounds += 1
        ready = max([o.ready_at for o in open_numbers], default=0.0)
        wait = max(ready - time.time(), settings.settle_delay_s if unsent else 0.0)
        if wait > 0:
            logger.info(
                "Settle round %d of %d: waiting %.1f s, then looking up %d open number(s) in the "
                "history and sending %d unsent number(s) again",
                rounds,
                settings.settle_rounds,
                wait,
                len(open_numbers),
                len(unsent),
            )
            sleep(wait)
        try:
            arrived, never = _look_up(api, open_numbers, settings, report)
        except Exception as error:  # the history is out of reach: what is open stays open
            logger.warning("Settling stopped: the history look-up failed: %s", error)
            break
        for outcome in arrived:
            report.outcomes.append(outcome)
            report.reconciled += len(outcome.accepted)
            if ledger:
                ledger.record(outcome)
        again = [(o.number, o.text) for o in never] + [(n, text) for n, text, _, _ in unsent]
        logger.info(
            "Settle round %d: %d number(s) found in the history (accepted), %d never arrived "
            "and %d were not sent: sending %d again",
            rounds,
            sum(len(o.accepted) for o in arrived),
            len(never),
            len(unsent),
            len(again),
        )
        open_numbers, unsent = [], []
        frame = _keep_back(pd.DataFrame(again, columns=["phone", "text"]), hold, report)
        report.resent += len(frame)
        batches = plan_batches(frame, settings.batch_size).batches

    report.outcomes.extend(_still_open(open_numbers, unsent))
    return report


def stopped_before(
    valid: pd.DataFrame,
    error: BaseException,
    hold: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> CampaignReport:
    """The report of rows a stopped run never got to (a later chunk of a streamed campaign):
    ``hold``'s rows are held, every other one is ``not_sent`` with the stop's code."""
    report = CampaignReport()
    to_send = _keep_back(valid, hold, report)
    if len(to_send):
        why = f"not sent: the run stopped before these rows ({error})"
        code = getattr(error, "code", None)
        numbers = to_send["phone"].astype(object).tolist()
        report.outcomes.append(
            BatchOutcome(Batch(-1, "", tuple(numbers)), not_sent=[(n, code, why) for n in numbers])
        )
    return report


def _keep_back(
    rows: pd.DataFrame, hold: Callable[[pd.DataFrame], np.ndarray] | None, report: CampaignReport
) -> pd.DataFrame:
    """The rows to send; those ``hold`` keeps back go to ``report.held`` (also when a settle
    round would send a number again: a window that closed holds it too)."""
    if hold is None:
        return rows
    held = np.asarray(hold(rows), dtype=bool) if len(rows) else np.zeros(0, dtype=bool)
    kept = rows[held][["phone", "text"]]
    report.held = kept if report.held is None else pd.concat([report.held, kept])
    return rows[~held]


def _settled_part(
    outcome: BatchOutcome,
    settings: CampaignSettings,
    open_numbers: list[OpenNumber],
    unsent: list[tuple[str, str, int | None, str]],
) -> BatchOutcome:
    """Move an outcome's numbers that may still be settled into ``open_numbers`` / ``unsent``;
    return the part that is final."""
    if not outcome.owned:  # another try of the task instance holds these: not ours to settle
        return outcome
    text = outcome.batch.text
    ready_at = outcome.finished_at + settings.settle_delay_s
    open_numbers.extend(
        OpenNumber(number, text, outcome.started_at, ready_at, why)
        for number, why in outcome.unknown
    )
    outcome.unknown = []
    if outcome.retry_later:
        unsent.extend((number, text, code, why) for number, code, why in outcome.not_sent)
        outcome.not_sent = []
    return outcome


def _look_up(
    api: SmsHistory,
    open_numbers: list[OpenNumber],
    settings: CampaignSettings,
    report: CampaignReport,
) -> tuple[list[BatchOutcome], list[OpenNumber]]:
    """Split open numbers into accepted outcomes (one per text) and those that never arrived."""
    if not open_numbers:
        return [], []
    taken = {message_id for o in report.outcomes for _, message_id in o.accepted}
    found = find_in_history(
        api,
        open_numbers,
        src_number=settings.src_number,
        until=datetime.now(UTC),
        taken=taken,
    )
    by_text: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, message_id in found.items():
        by_text[open_numbers[i].text].append((open_numbers[i].number, message_id))
    arrived = [
        BatchOutcome(Batch(-1, text, tuple(n for n, _ in rows)), accepted=rows)
        for text, rows in by_text.items()
    ]
    never = [o for i, o in enumerate(open_numbers) if i not in found]
    return arrived, never


def _still_open(
    open_numbers: list[OpenNumber], unsent: list[tuple[str, str, int | None, str]]
) -> list[BatchOutcome]:
    """What settling could not finish: open numbers are unknown, unsent ones not sent."""
    outcomes = []
    if open_numbers:
        numbers = tuple(o.number for o in open_numbers)
        unknown = [(o.number, o.why) for o in open_numbers]
        outcomes.append(BatchOutcome(Batch(-1, "", numbers), unknown=unknown))
    if unsent:
        numbers = tuple(number for number, _, _, _ in unsent)
        not_sent = [(number, code, why) for number, _, code, why in unsent]
        outcomes.append(BatchOutcome(Batch(-1, "", numbers), not_sent=not_sent))
    return outcomes
