"""The campaign runner: one pass over the recipients, every campaign rule in one place.

A pass reads the recipients a chunk at a time and, per chunk, prepares the rows (normalised,
checked, copies of earlier rows dropped), sorts out what may not be sent (opted out, outside
the window), sends the rest through a :class:`~.campaign.PassSender` and writes every row
whose outcome is final to the sink. When every chunk is out, the pass settles what its chunks
left open, once, and writes those rows too: the sink ends with exactly one row per input row.
The runner talks to the world only through small protocols (the API, the ledger, the sink,
the clock, sleep), so each rule is a unit test away; the operator only wires Airflow to it.

Precedence of outcomes: invalid, duplicate, suppressed (opted out), outside the window; the
rest is accepted, failed, not sent or unknown. ``accepted + failed + not_sent + unknown +
invalid + duplicates + suppressed + outside_window == recipients``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms import report as rows_of
from airflow_provider_voxsms.sms import window as window_clock
from airflow_provider_voxsms.sms.campaign import CampaignSettings, Ledger, PassSender, SmsApi
from airflow_provider_voxsms.sms.model import CampaignReport
from airflow_provider_voxsms.sms.numbers.mask import shown_number
from airflow_provider_voxsms.sms.plan import SendPlan, plan_batches
from airflow_provider_voxsms.sms.recipients import PreparedRecipients, prepare_recipients
from airflow_provider_voxsms.sms.seen import SeenKeys, pair_keys, text_keys
from airflow_provider_voxsms.sms.smart_encoding import would_save
from airflow_provider_voxsms.sms.suppression import OptOuts
from airflow_provider_voxsms.sms.templates import parse_template
from airflow_provider_voxsms.sms.variants import HOLDOUT, Variants
from airflow_provider_voxsms.sms.window import SendWindow, assess

log = logging.getLogger(__name__)

NO_OPT_OUTS = OptOuts(pd.Index([], dtype=object), 0)


class OutcomeSink(Protocol):
    """Where outcome rows go (``OUTCOME_COLUMNS``): the results table, or XCom frames."""

    def write(self, rows: pd.DataFrame) -> None: ...


@dataclass(frozen=True)
class RunnerSettings:
    """Everything the runner decides with: how rows become messages (``phone_column`` to
    ``number_check``), how they are sent (``sending``), the window and the guards."""

    sending: CampaignSettings
    phone_column: str = "phone"
    text: str | None = None
    text_column: str | None = None
    default_region: str | None = None
    number_check: str = "possible"
    dedupe: str = "number"
    smart_encoding: bool = False
    window: SendWindow | None = None
    wait_for_window: bool = False
    dry_run: bool = False
    max_recipients: int | None = None
    max_segments: int | None = None
    validity_s: float | None = None  # rows not sent this long after the campaign's start expire
    variants: Variants | None = None  # texts by variant (then text and text_column are None)
    log_numbers: str = "masked"  # how log lines and errors show numbers: "masked" or "full"

    @property
    def per_row_texts(self) -> bool:
        """Whether rows may differ in text (a text column, a template or variants)."""
        if self.variants is not None or self.text_column is not None:
            return True
        return parse_template(self.text) is not None

    @property
    def needs_totals(self) -> bool:
        """Whether a guard must see the whole input before anything is sent."""
        waits = self.wait_for_window and self.window is not None
        return self.max_recipients is not None or self.max_segments is not None or waits


@dataclass
class PassResult:
    """What a pass did: its ``summary`` (the task's return value), the error that stopped
    it, and, when it ends in a wait for a send window, the seconds until that window opens."""

    summary: dict
    stopped_by: BaseException | None = None
    wait_s: float | None = None


@dataclass
class _Pass:
    """What one pass carries from chunk to chunk: its counts, the keys of the rows it took
    (to drop copies across chunks), how its open numbers were written, the next window."""

    now: datetime
    sender: PassSender | None  # None: a dry run
    seen: SeenKeys | None  # None: one chunk
    pairs: SeenKeys | None = None  # (number, text) pairs, to tell copies with another text
    differing: SeenKeys = field(default_factory=SeenKeys)  # numbers whose rows' texts differed
    counts: dict[str, int] = field(default_factory=dict)
    texts: SeenKeys = field(default_factory=SeenKeys)  # distinct texts planned
    written: dict[str, str] = field(default_factory=dict)  # open numbers as written
    held: int = 0
    next_window: datetime | None = None
    variants: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(value)

    def add_rows(self, rows: pd.DataFrame) -> None:
        for outcome, count in rows["outcome"].value_counts().items():
            self.add(rows_of.OUTCOME_SUMMARY_KEYS[outcome], count)
        if rows["variant"].notna().any():
            people = rows[rows["variant"].notna() & (rows["outcome"] != "duplicate")]
            accepted = people["outcome"] == "accepted"
            for name, group in people.groupby("variant", sort=False)["outcome"]:
                counts = self.variants.setdefault(name, {"recipients": 0, "accepted": 0})
                counts["recipients"] += len(group)
                counts["accepted"] += int(accepted[group.index].sum())

    def add_report(self, report: CampaignReport) -> None:
        self.add("earlier", report.earlier)
        self.add("reconciled", report.reconciled)
        self.add("resent", report.resent)
        self.add("fragments", sum(o.fragments for o in report.outcomes))

    def as_written_later(self, numbers: list[str]) -> list[str]:
        """How the settle phase's numbers were written (kept when their chunk was done)."""
        return [self.written.get(n, n) for n in numbers]

    @property
    def waiting(self) -> bool:
        """Whether rows were held for a later window and the pass was not stopped."""
        sender = self.sender
        return bool(self.held) and sender is not None and sender.stopped_by is None


SUMMARY_KEYS = (
    "recipients",
    "valid",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
    "batches",
    "distinct_texts",
    "segments_planned",
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "capped",
    "expired",
    "held_out",
    "earlier",
    "reconciled",
    "resent",
    "fragments",
    "smart_encoded",
    "segments_saved",
)


class CampaignRunner:
    """Runs passes of one campaign over its recipients (see the module's docstring).

    :param opted_out: numbers never to text.
    :param clock: the current UTC time, by which send windows are judged (default:
        ``sms.window.utc_now``, looked up at each call).
    """

    def __init__(
        self,
        settings: RunnerSettings,
        *,
        api: SmsApi,
        sink: OutcomeSink,
        ledger: Ledger | None = None,
        opted_out: OptOuts = NO_OPT_OUTS,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger = log,
    ) -> None:
        self.settings, self.api, self.sink, self.ledger = settings, api, sink, ledger
        self.opted_out, self.sleep, self.log = opted_out, sleep, logger
        self.clock = clock or (lambda: window_clock.utc_now())

    def run(self, chunks: Callable[[], Iterable[Any]], *, streamed: bool) -> PassResult:
        """One pass over ``chunks()`` (recipients as a DataFrame, list or dicts each).

        ``streamed``: the chunks are parts of one input (copies are dropped across them, and
        guards that need the whole input read it once first); else there is one chunk.
        """
        started, now, s = time.monotonic(), self.clock(), self.settings
        if streamed and s.needs_totals:
            self._check_totals(*self._totals(chunks(), now))
        sender = None
        if not s.dry_run:
            sender = PassSender(
                self.api,
                s.sending,
                ledger=self.ledger,
                hold=self._hold,
                logger=self.log,
                sleep=self.sleep,
                expired=self._expiry(now),
            )
        state = _Pass(now, sender, SeenKeys() if streamed else None)
        if streamed and s.dedupe == "number" and s.per_row_texts:
            state.pairs = SeenKeys()
        for number, chunk in enumerate(chunks(), 1):
            self._chunk(chunk, state, f" chunk {number}" if streamed else "", check=not streamed)
        if sender is not None:
            settled = sender.settle()
            state.add_report(settled)
            self._write_sent(settled, state.as_written_later, state)
        if differing := len(state.differing):
            self.log.warning(
                "%d number(s) had rows with different texts: each got one message, the first "
                "row's (dedupe='number'; dedupe='number_and_text' sends each distinct text)",
                differing,
            )
        summary = {key: state.counts.get(key, 0) for key in SUMMARY_KEYS}
        summary["distinct_texts"] = len(state.texts)
        summary["duration_s"] = round(time.monotonic() - started, 3)
        summary["dry_run"] = s.dry_run
        if s.variants is not None:
            names = [*s.variants.names, HOLDOUT]
            empty = {"recipients": 0, "accepted": 0}
            summary["variants"] = {name: state.variants.get(name, dict(empty)) for name in names}
        stopped = sender.stopped_by if sender is not None else None
        if stopped is not None:
            summary["stopped_by"] = str(stopped)
        if not (s.wait_for_window and state.waiting):
            return PassResult(summary, stopped)
        wait_s = (state.next_window - self.clock()).total_seconds()
        return PassResult(summary, stopped, max(0.0, wait_s))

    # -- one chunk ----------------------------------------------------------------------------

    def _chunk(self, chunk, state: _Pass, label: str, *, check: bool) -> None:
        """Prepare, filter and send one chunk; write the rows it settled."""
        prepared = self._prepare(chunk, state.seen, state.pairs)
        valid = prepared.valid
        suppressed, outside = self._filters(valid, state.now)
        held_out = ~suppressed & _in_holdout(valid)
        outside &= ~held_out
        going = valid[~suppressed & ~held_out & ~outside]
        plan = plan_batches(going, self.settings.sending.batch_size)
        state.texts.take(np.unique(text_keys(going["text"])))
        if prepared.differing is not None and len(prepared.differing):
            state.differing.take(np.unique(pair_keys(prepared.differing, None)))
        if "smart_saved" in going:
            state.add("smart_encoded", (going["smart_saved"] >= 0).sum())
            state.add("segments_saved", going["smart_saved"].clip(lower=0).sum())
        self._log_prepared(prepared, suppressed, outside, plan, label)
        if check:
            self._check_totals(*self._would_send(valid, suppressed, outside, state.now))
        state.add("recipients", prepared.total)
        state.add("valid", len(valid))
        state.add("batches", len(plan.batches))
        state.add("segments_planned", plan.total_segments)
        self._write(rows_of.prepared_rows(prepared, self.settings.dedupe), state)
        self._write(rows_of.held_out_rows(valid[held_out], prepared.as_written), state)
        valid = valid[~held_out]
        suppressed, outside = suppressed[~held_out], outside[~held_out]
        sender = state.sender
        if sender is None:  # a dry run: what would be held is reported, nothing is sent
            self._write_held(valid[suppressed], valid[outside], prepared.as_written, state)
            return
        open_before, unsent_before = len(sender.open_numbers), len(sender.unsent)
        report = sender.send(valid)
        state.add_report(report)
        self._write_sent(report, prepared.as_written, state)
        still_open = [o.number for o in sender.open_numbers[open_before:]]
        still_open += [u.number for u in sender.unsent[unsent_before:]]
        state.written.update(zip(still_open, prepared.as_written(still_open), strict=True))

    def _prepare(
        self, chunk, seen: SeenKeys | None, pairs: SeenKeys | None = None
    ) -> PreparedRecipients:
        """A chunk's rows normalised and checked, without copies of rows earlier chunks had
        (``pairs``: every (number, text) taken, to count copies that had another text)."""
        s = self.settings
        prepared = prepare_recipients(
            chunk,
            phone_column=s.phone_column,
            text=s.text,
            text_column=s.text_column,
            default_region=s.default_region,
            number_check=s.number_check,
            dedupe=s.dedupe,
            smart_encoding=s.smart_encoding,
            variants=s.variants,
        )
        if seen is None:
            return prepared
        valid = prepared.valid
        by_number = s.dedupe == "number" or not s.per_row_texts
        copies = seen.take(pair_keys(valid["phone"], None if by_number else valid["text"]))
        if pairs is not None:
            same_text = pairs.take(pair_keys(valid["phone"], valid["text"]))
            other = valid["phone"][copies & ~same_text]
            if len(other):
                known = prepared.differing if prepared.differing is not None else other[:0]
                prepared.differing = pd.concat([known, other]).drop_duplicates()
        return prepared.drop_copies(copies)

    def _filters(self, valid: pd.DataFrame, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Which valid rows are opted out, and which others are outside their window now."""
        suppressed = self.opted_out.matches(valid["phone"]).to_numpy(bool)
        outside = ~suppressed & self._outside(valid, now)
        return suppressed, outside

    def _outside(self, rows: pd.DataFrame, now: datetime) -> np.ndarray:
        if self.settings.window is None or rows.empty:
            return np.zeros(len(rows), dtype=bool)
        return ~assess(rows["phone"], self.settings.window, now)["inside"].to_numpy(bool)

    def _expiry(self, now: datetime) -> Callable[[], bool] | None:
        """Whether the validity period is over, counted from the campaign's first start as
        the ledger recorded it (without a ledger: this try's start)."""
        if self.settings.validity_s is None:
            return None
        started = getattr(self.ledger, "started_at", None) or now
        deadline = started + timedelta(seconds=self.settings.validity_s)
        return lambda: self.clock() >= deadline

    def _hold(self, rows: pd.DataFrame) -> np.ndarray:
        """Rows not to send now: opted out, or outside their window at this moment (judged
        when they go, after the ledger's resume, so what earlier tries settled stays)."""
        held = self.opted_out.matches(rows["phone"]).to_numpy(bool)
        return held | self._outside(rows, self.clock())

    # -- outcome rows -------------------------------------------------------------------------

    def _write_sent(self, report: CampaignReport, as_written, state: _Pass) -> None:
        """Write a report's final answers and its held rows (opted out, or deferred)."""
        self._write(rows_of.sent_rows(report, as_written), state)
        if report.held is None or report.held.empty:
            return
        opted = self.opted_out.matches(report.held["phone"]).to_numpy(bool)
        self._write_held(report.held[opted], report.held[~opted], as_written, state)

    def _write_held(self, suppressed, held, as_written, state: _Pass) -> None:
        """Write rows kept back: opted out, or outside the window (noting when it opens)."""
        deferred = rows_of.deferred_numbers(held, self.settings.window, self.clock())
        if len(held):
            state.held += len(held)
            first = pd.to_datetime(deferred["next_window_start"], utc=True).min()
            if pd.notna(first) and (state.next_window is None or first < state.next_window):
                state.next_window = first.to_pydatetime()
        self._write(rows_of.held_rows(suppressed, deferred, as_written), state)

    def _write(self, rows: pd.DataFrame, state: _Pass) -> None:
        if not len(rows):
            return
        if self.settings.variants is not None:  # a number's variant is a function of it
            has = (rows["outcome"] != "invalid") & rows["destination_number"].notna()
            rows["variant"] = rows["variant"].astype(object)
            if has.any():
                drawn = self.settings.variants.assign(rows.loc[has, "destination_number"])
                rows.loc[has, "variant"] = np.asarray(drawn, dtype=object)
        state.add_rows(rows)
        self.sink.write(rows)

    def _log_prepared(self, prepared, suppressed, outside, plan: SendPlan, label: str) -> None:
        going_texts = prepared.valid["text"][~suppressed & ~outside]
        self.log.info(
            "Prepared%s: %d rows -> %d valid (%d invalid, %d duplicates, %d suppressed, %d "
            "outside the send window); %d distinct text(s); %s",
            label,
            prepared.total,
            len(prepared.valid),
            len(prepared.invalid),
            prepared.duplicates,
            int(suppressed.sum()),
            int(outside.sum()),
            plan.texts,
            plan.summary(),
        )
        if not self.settings.smart_encoding:
            chars, messages, saved = would_save(going_texts)
            if chars:
                self.log.warning(
                    "%d message(s) are UCS-2 only because of %s: smart_encoding=True would send "
                    "them as GSM-7 and save %d segment(s)",
                    messages,
                    ", ".join(repr(c) for c in chars),
                    saved,
                )
        if invalid := rows_of.invalid_summary(prepared, shown=self._shown):
            self.log.warning(
                "%d invalid row(s), never sent (listed with the failed numbers): %s",
                len(prepared.invalid),
                "; ".join(invalid),
            )

    def _shown(self, number, *, e164: bool = False) -> str:
        """A number as log lines and errors show it (``log_numbers``)."""
        return shown_number(number, self.settings.log_numbers, e164=e164)

    # -- guards that refuse to start ----------------------------------------------------------

    def _totals(self, chunks: Iterable[Any], now: datetime) -> tuple:
        """What the whole streamed input would send: numbers, segments and the rows whose
        window never opens (a first read, before anything is sent)."""
        seen, numbers, segments, never = SeenKeys(), 0, 0, []
        for chunk in chunks:
            valid = self._prepare(chunk, seen).valid
            count, chunk_segments, chunk_never = self._would_send(
                valid, *self._filters(valid, now), now
            )
            numbers, segments = numbers + count, segments + chunk_segments
            never.append(chunk_never)
        return numbers, segments, pd.concat(never, ignore_index=True)

    def _would_send(self, valid, suppressed, outside, now: datetime) -> tuple:
        """Numbers and segments these rows would send, and those whose window never opens."""
        s = self.settings
        sendable, outside = valid[~suppressed], outside[~suppressed]
        to_send = sendable if s.wait_for_window else sendable[~outside]
        segments = plan_batches(to_send, s.sending.batch_size).total_segments
        never = rows_of.deferred_numbers(sendable[outside], s.window, now)
        if not s.wait_for_window:
            never = never.iloc[:0]
        return len(to_send), segments, never[never["next_window_start"].isna()]

    def _check_totals(self, numbers: int, segments: int, never: pd.DataFrame) -> None:
        s = self.settings
        if s.max_recipients is not None and numbers > s.max_recipients:
            raise RecipientsError(
                f"{numbers} numbers would be sent, more than max_recipients="
                f"{s.max_recipients}. Raise max_recipients or split the list; nothing was sent."
            )
        if s.max_segments is not None and segments > s.max_segments:
            raise RecipientsError(
                f"{segments} segments would be sent, more than max_segments="
                f"{s.max_segments} ({numbers} messages). Raise max_segments, shorten the "
                "text or split the list; nothing was sent."
            )
        if len(never):
            window = s.window
            raise RecipientsError(
                f"{len(never)} number(s) are never inside send_window=('{window.start:%H:%M}', "
                f"'{window.end:%H:%M}') in all their time zones at once (e.g. "
                f"{self._shown(never['destination_number'].iloc[0], e164=True)}: "
                f"{never['time_zone'].iloc[0]}), so "
                "outside_window='wait' would wait forever. Widen the window or use "
                "outside_window='skip'; nothing was sent."
            )


def _in_holdout(valid: pd.DataFrame) -> np.ndarray:
    """Which valid rows are in the hold-out group (never sent)."""
    if "variant" not in valid:
        return np.zeros(len(valid), dtype=bool)
    return (valid["variant"] == HOLDOUT).to_numpy(bool)
