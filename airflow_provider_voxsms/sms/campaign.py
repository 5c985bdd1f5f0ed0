"""One pass of a campaign: send chunk after chunk as they come, then settle them all at once.

Each chunk resumes from what earlier tries settled, keeps back what ``hold`` says may not go
now, and is dispatched; its answers that are final are returned at once, so the caller can
write them and forget the chunk. Numbers whose answer was ambiguous, claims an earlier try
left open and batches throttled past the hook's attempts stay with the sender until
:meth:`PassSender.settle`, which runs the settle rounds once for the whole pass: before each
round it waits ``settle_delay_s``, then looks the open numbers up in the history, credits those
found as accepted and sends again those that never arrived. After ``settle_rounds`` rounds,
what is still open is ``unknown`` or ``not_sent``. A pass stopped by an error that would repeat
for every batch does not settle: the rest of it is ``not_sent`` and its open numbers unknown.
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
from airflow_provider_voxsms.sms.seen import SeenKeys
from airflow_provider_voxsms.sms.segments import count_segments
from airflow_provider_voxsms.sms.settle import OpenNumber, SmsHistory, find_in_history

log = logging.getLogger(__name__)

Hold = Callable[[pd.DataFrame], np.ndarray]


class SmsApi(SmsHistory, Protocol):
    """The API a campaign uses (``VoximplantHook``): a check of its configuration, made once
    before the first request so a bad connection fails clearly, and the two methods."""

    def check_config(self) -> None: ...

    def a2p_send_sms(
        self, src_number: str, dst_numbers: list[str], text: str, store_body: bool = False
    ) -> A2PSendSmsResponse: ...


class Ledger(Protocol):
    """Where a campaign claims batches before sending and records outcomes (``SendLedger``);
    ``earlier`` says what earlier tries knew of some rows (see ``sms.resume``); ``started_at``
    is when the campaign first started (its validity period counts from there)."""

    started_at: datetime | None

    def claim(self, batch: Batch) -> Batch | None: ...

    def record(self, outcome: BatchOutcome) -> None: ...

    def earlier(self, rows: pd.DataFrame) -> pd.DataFrame: ...


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


@dataclass(frozen=True, slots=True)
class Unsent:
    """A number whose request provably never reached the API and may be sent again."""

    number: str
    text: str
    code: int | None
    why: str


class PassSender:
    """Sends the chunks of one pass and settles what they left open, once, at the end.

    :param ledger: claims each batch before it is sent, records each outcome and tells what
        earlier tries settled.
    :param hold: given rows about to be sent (after resuming), which of them to keep back (a
        boolean mask; they end in ``report.held``). A settle round's re-sends are judged when
        they go, so a window that closed meanwhile holds them too.
    :param expired: whether the campaign's validity period is over: batches that would start
        after it are ``expired`` (settle re-sends too).
    """

    def __init__(
        self,
        api: SmsApi,
        settings: CampaignSettings,
        *,
        ledger: Ledger | None = None,
        hold: Hold | None = None,
        logger: logging.Logger = log,
        sleep: Callable[[float], None] = time.sleep,
        expired: Callable[[], bool] | None = None,
    ) -> None:
        self.api, self.settings, self.ledger, self.hold = api, settings, ledger, hold
        self.expired = expired
        self.log, self.sleep = logger, sleep
        self.stopped_by: BaseException | None = None
        self.open_numbers: list[OpenNumber] = []
        self.unsent: list[Unsent] = []
        self._accepted_ids = SeenKeys()  # message ids this pass credited: never credit twice
        self._credited: list[np.ndarray] = []  # ids credited since the last merge into them
        self._api_reached = threading.Event()  # for the whole pass: see dispatch()
        self._checked = False

    def send(self, valid: pd.DataFrame) -> CampaignReport:
        """Send a chunk's rows (``phone``, ``text``; one row per message). The report holds
        their final outcomes and held rows; the rest waits in the sender for :meth:`settle`."""
        report = CampaignReport()
        resumed = Resumed(valid, None, [])
        if self.ledger is not None:
            with bulk_objects():
                previous = self.ledger.earlier(valid)
                resumed = resume(valid, previous, settle_delay_s=self.settings.settle_delay_s)
        if resumed.settled is not None:
            report.outcomes.append(resumed.settled)
            report.earlier = len(resumed.settled.accepted) + len(resumed.settled.failed)
            self._credit(resumed.settled)
        self.open_numbers += resumed.open_numbers
        to_send = self._keep_back(resumed.to_send, report)
        if self.stopped_by is not None:  # an earlier chunk's stop: these were never sent
            if len(to_send):
                report.outcomes.append(_not_sent(to_send, self.stopped_by))
            return report
        plan = plan_batches(to_send, self.settings.batch_size)
        if report.earlier or resumed.open_numbers:
            self.log.info(
                "Resuming from the send ledger: %d number(s) settled by earlier tries, %d left "
                "open by them (looked up in the history before anything is sent again), %d to "
                "send in %d request(s)",
                report.earlier,
                len(resumed.open_numbers),
                plan.recipients,
                len(plan.batches),
            )
        self._dispatch(plan.batches, report)
        self._merge_credited()
        return report

    def settle(self) -> CampaignReport:
        """The settle rounds for everything the pass left open; what stays open after the last
        round (or when the pass stopped) is ``unknown`` or ``not_sent``."""
        report, rounds = CampaignReport(), 0
        while self.stopped_by is None and rounds < self.settings.settle_rounds:
            if not self.open_numbers and not self.unsent:
                break
            rounds += 1
            self._wait_for_round(rounds)
            try:
                arrived, never = self._look_up()
            except Exception as error:  # the history is out of reach: what is open stays open
                self.log.warning("Settling stopped: the history look-up failed: %s", error)
                break
            for outcome in arrived:
                report.outcomes.append(outcome)
                report.reconciled += len(outcome.accepted)
                if self.ledger is not None:
                    self.ledger.record(outcome)
            again = [(o.number, o.text) for o in never] + [(u.number, u.text) for u in self.unsent]
            self.log.info(
                "Settle round %d: %d number(s) found in the history (accepted), %d never "
                "arrived and %d were not sent: sending %d again",
                rounds,
                sum(len(o.accepted) for o in arrived),
                len(never),
                len(self.unsent),
                len(again),
            )
            self.open_numbers, self.unsent = [], []
            rows = self._keep_back(pd.DataFrame(again, columns=["phone", "text"]), report)
            report.resent += len(rows)
            self._dispatch(plan_batches(rows, self.settings.batch_size).batches, report)
        report.outcomes.extend(self._still_open())
        self.open_numbers, self.unsent = [], []
        return report

    def _dispatch(self, batches: list[Batch], report: CampaignReport) -> None:
        if not batches:
            return
        if not self._checked:  # once, before the first request
            self.api.check_config()
            self._checked = True
        ledger = self.ledger
        dispatched = dispatch(
            batches,
            self._send_batch,
            total_numbers=sum(len(b.numbers) for b in batches),
            max_concurrency=self.settings.max_concurrency,
            requests_per_second=self.settings.requests_per_second,
            claim=ledger.claim if ledger is not None else None,
            on_outcome=ledger.record if ledger is not None else None,
            api_reached=self._api_reached,
            expired=self.expired,
            progress_interval_s=self.settings.progress_interval_s,
            logger=self.log,
        )
        self.stopped_by = self.stopped_by or dispatched.stopped_by
        for outcome in dispatched.outcomes:
            report.outcomes.append(self._final_part(outcome))

    def _send_batch(self, batch: Batch) -> A2PSendSmsResponse:
        s = self.settings
        return self.api.a2p_send_sms(s.src_number, list(batch.numbers), batch.text, s.store_body)

    def _final_part(self, outcome: BatchOutcome) -> BatchOutcome:
        """Keep an outcome's numbers that may still be settled; return the part that is final."""
        self._credit(outcome)
        if not outcome.owned:  # another try of the task instance holds these: not ours to settle
            return outcome
        text, ready_at = outcome.batch.text, outcome.finished_at + self.settings.settle_delay_s
        self.open_numbers += [
            OpenNumber(number, text, outcome.started_at, ready_at, why)
            for number, why in outcome.unknown
        ]
        outcome.unknown = []
        if outcome.retry_later:
            self.unsent += [Unsent(n, text, code, why) for n, code, why in outcome.not_sent]
            outcome.not_sent = []
        return outcome

    def _credit(self, outcome: BatchOutcome) -> None:
        if outcome.accepted:
            ids = np.fromiter((i for _, i in outcome.accepted), np.int64, len(outcome.accepted))
            self._credited.append(ids)

    def _merge_credited(self) -> None:
        """Add the ids credited since the last merge to the pass's sorted ids, once per chunk
        (a merge copies a run of up to a million ids: once per batch would be quadratic)."""
        if self._credited:
            ids = np.sort(np.concatenate(self._credited))
            self._credited = []
            self._accepted_ids.take(ids[np.r_[True, ids[1:] != ids[:-1]]])  # unique, by sort

    def _keep_back(self, rows: pd.DataFrame, report: CampaignReport) -> pd.DataFrame:
        """The rows to send; those ``hold`` keeps back go to ``report.held``."""
        if self.hold is None or rows.empty:
            return rows
        held = np.asarray(self.hold(rows), dtype=bool)
        kept = rows[held][["phone", "text"]]
        report.held = kept if report.held is None else pd.concat([report.held, kept])
        return rows[~held]

    def _wait_for_round(self, round_number: int) -> None:
        ready = max([o.ready_at for o in self.open_numbers], default=0.0)
        wait = max(ready - time.time(), self.settings.settle_delay_s if self.unsent else 0.0)
        if wait <= 0:
            return
        self.log.info(
            "Settle round %d of %d: waiting %.1f s, then looking up %d open number(s) in the "
            "history and sending %d unsent number(s) again",
            round_number,
            self.settings.settle_rounds,
            wait,
            len(self.open_numbers),
            len(self.unsent),
        )
        self.sleep(wait)

    def _look_up(self) -> tuple[list[BatchOutcome], list[OpenNumber]]:
        """Split open numbers into accepted outcomes (one per text) and those never arrived."""
        if not self.open_numbers:
            return [], []
        self._merge_credited()
        found = find_in_history(
            self.api,
            self.open_numbers,
            src_number=self.settings.src_number,
            until=datetime.now(UTC),
            taken=_Taken(self._accepted_ids),
        )
        by_text: dict[str, list[tuple[str, int]]] = defaultdict(list)
        fragments: dict[str, int] = defaultdict(int)
        for i, row in found.items():
            text = self.open_numbers[i].text
            by_text[text].append((self.open_numbers[i].number, int(row["message_id"])))
            fragments[text] += _fragments(row, text)
        arrived = [
            BatchOutcome(
                Batch(-1, text, tuple(n for n, _ in rows)), accepted=rows, fragments=fragments[text]
            )
            for text, rows in by_text.items()
        ]
        for outcome in arrived:
            self._credit(outcome)
        never = [o for i, o in enumerate(self.open_numbers) if i not in found]
        return arrived, never

    def _still_open(self) -> list[BatchOutcome]:
        """What settling could not finish: open numbers are unknown, unsent ones not sent."""
        outcomes = []
        if self.open_numbers:
            numbers = tuple(o.number for o in self.open_numbers)
            unknown = [(o.number, o.why) for o in self.open_numbers]
            outcomes.append(BatchOutcome(Batch(-1, "", numbers), unknown=unknown))
        if self.unsent:
            numbers = tuple(u.number for u in self.unsent)
            not_sent = [(u.number, u.code, u.why) for u in self.unsent]
            outcomes.append(BatchOutcome(Batch(-1, "", numbers), not_sent=not_sent))
        return outcomes


class _Taken:
    """The message ids already credited in this pass, as ``find_in_history`` asks for them: a
    compact array of the pass's accepted ids, and a set of those credited while it looks."""

    def __init__(self, accepted: SeenKeys) -> None:
        self.accepted, self.added = accepted, set()

    def __contains__(self, message_id: int) -> bool:
        return message_id in self.added or self.accepted.contains(message_id)

    def add(self, message_id: int) -> None:
        self.added.add(message_id)


def _fragments(row: dict, text: str) -> int:
    """A found message's fragments: as the history reports them, else as its text counts."""
    try:
        return int(row["fragments"])
    except (KeyError, TypeError, ValueError):
        return count_segments(text).count


def _not_sent(rows: pd.DataFrame, error: BaseException) -> BatchOutcome:
    """The outcome of rows a stopped pass never got to: ``not_sent`` with the stop's code."""
    why = f"not sent: the run stopped before these rows ({error})"
    code = getattr(error, "code", None)
    numbers = rows["phone"].astype(object).tolist()
    return BatchOutcome(Batch(-1, "", tuple(numbers)), not_sent=[(n, code, why) for n in numbers])
