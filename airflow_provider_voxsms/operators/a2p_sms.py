"""A2PSendSmsOperator: one SMS campaign to the recipients an upstream task produced."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from airflow.configuration import conf
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_voxsms.compat import dataframe_xcoms_unsupported
from airflow_provider_voxsms.errors import (
    RESUMABLE_CODES,
    CampaignStoppedError,
    InputError,
    LedgerError,
    RecipientsError,
    VoximplantApiError,
)
from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
from airflow_provider_voxsms.ledger import SendLedger, TaskInstanceKey
from airflow_provider_voxsms.results import XCOM_OUTCOMES, ResultsTable, outcomes_table
from airflow_provider_voxsms.sms import report as run_report
from airflow_provider_voxsms.sms import window as window_clock
from airflow_provider_voxsms.sms.campaign import CampaignSettings, run_campaign, stopped_before
from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE, CampaignReport
from airflow_provider_voxsms.sms.plan import plan_batches
from airflow_provider_voxsms.sms.recipients import prepare_recipients
from airflow_provider_voxsms.sms.report import OUTCOME_SUMMARY_KEYS
from airflow_provider_voxsms.sms.seen import SeenKeys, pair_keys, text_keys
from airflow_provider_voxsms.sms.source import DEFAULT_CHUNK_ROWS, recipient_chunks
from airflow_provider_voxsms.sms.suppression import OptOuts, opt_outs
from airflow_provider_voxsms.sms.templates import parse_template
from airflow_provider_voxsms.sms.window import SendWindow, assess
from airflow_provider_voxsms.sql import first_column

# Output rows per XCom above which the task warns: a million-row XCom is a million-row blob in
# the metadata database, read again by every downstream task that pulls it.
XCOM_ROWS_WARNING = 100_000


@dataclass
class _PassState:
    """What one pass over the recipients carries from chunk to chunk."""

    opted_out: OptOuts
    now: datetime
    seen: SeenKeys | None  # (number, text) pairs of earlier chunks; None: one chunk
    texts: SeenKeys  # distinct texts planned
    results: ResultsTable | None
    ledger: SendLedger | None = None
    stopped: BaseException | None = None
    held: int = 0
    next_window: datetime | None = None
    summaries: list[dict] = field(default_factory=list)
    outputs: dict[str, list] = field(default_factory=lambda: {key: [] for key in XCOM_OUTCOMES})


class A2PSendSmsOperator(BaseOperator):
    """Send an A2P SMS to every valid recipient once, in batches of at most 100, concurrently.

    Recipients are normalised to international digits, invalid rows are reported and never sent,
    and duplicates (same number, same text) are sent once. Ambiguous answers are settled through
    the API's history before the task ends. Before anything is planned, rows are sorted out in
    this order: invalid, duplicate, suppressed (opted out), outside the send window. Every
    recipient ends as exactly one of accepted, failed, not sent, unknown, invalid, duplicate,
    suppressed or outside the window; the counts add up to the input rows.

    Returns a summary dict (``recipients``, ``valid``, ``invalid``, ``duplicates``,
    ``suppressed``, ``outside_window``, ``batches``, ``distinct_texts``, ``segments_planned``,
    ``accepted``, ``failed``, ``not_sent``, ``unknown``, ``earlier``, ``reconciled``,
    ``resent``, ``fragments``, ``duration_s``, ``dry_run``) and pushes the XComs
    ``failed_numbers`` (``destination_number``, ``error_code``, ``error_description``,
    ``stage``), ``accepted_numbers`` (``destination_number``, ``message_id``),
    ``unknown_numbers`` (``destination_number``, ``reason``) and ``deferred_numbers``
    (``destination_number``, ``time_zone``, ``next_window_start``: rows outside the window).

    With ``results_conn_id`` every input row's outcome goes to a table instead, and those
    XComs only say where the rows are (see ``results_conn_id``).

    :param src_number: the SenderID the SMS come from. (templated)
    :param recipients: a DataFrame, Series, list of numbers or list of dicts, or an XComArg of
        one. Give this, ``recipients_sql`` or ``recipients_path``. (templated)
    :param recipients_sql: a query whose rows are the recipients, read in chunks (PostgreSQL
        through a server-side cursor) on ``recipients_conn_id``, any common-sql connection.
        (templated)
    :param recipients_conn_id: the connection for ``recipients_sql``.
    :param recipients_path: a CSV or Parquet file, or a directory of them, local or any
        ``ObjectStoragePath`` URL (``s3://...``), read in chunks; CSV cells as text. (templated)
    :param recipients_chunk_rows: rows read, prepared and sent at a time from
        ``recipients_sql`` / ``recipients_path``: memory follows this, not the campaign's size.
        Duplicates are dropped across chunks exactly as within one.
    :param results_conn_id: common-sql connection for the table ``<results_table_prefix>_
        outcomes``: one row per input row (``outcome`` accepted, failed, not_sent, unknown,
        invalid, duplicate, suppressed or deferred, with message id, code, reason), written
        chunk by chunk and replaced when a try starts. The summary then has ``results`` (where
        the rows are) and the four output XComs are such locations with their ``outcomes`` and
        ``rows``; the delivery report reads the accepted messages from there.
    :param results_table_prefix: prefix of the results table's name.
    :param text: the message, or a template of it with ``{column}`` placeholders filled per
        row from the recipients' columns (``"Hi {first_name}"``). Give this or
        ``text_column``. (templated: Jinja renders ``{{ }}`` first)
    :param text_column: column holding each row's own message; equal texts share requests.
    :param phone_column: column holding the numbers (DataFrame or list of dicts).
    :param default_region: ISO region (e.g. ``"GB"``) in which national numbers are parsed.
    :param number_check: ``"possible"`` (default: a length and shape the country's numbering
        plan allows) or ``"valid"`` (also a number range in use, per ``phonenumbers``).
    :param voximplant_conn_id: connection of type ``voximplant``.
    :param batch_size: numbers per request, 1..100.
    :param max_concurrency: requests in flight at once (one hook, one token, one pool).
    :param requests_per_second: optional cap on request starts per second.
    :param store_body: ask Voximplant to store message texts (the history then tells texts
        apart when settling).
    :param dry_run: prepare and plan only; log the cost and send nothing.
    :param max_recipients: refuse to start when more numbers than this would be sent.
    :param fail_on_failed_ratio: fail the task, after sending and pushing the outputs, when
        ``(failed + not_sent + invalid) / (recipients - duplicates)`` exceeds this share (0..1).
    :param settle_delay_s: seconds to wait before each settle round, in which numbers whose
        answer was ambiguous are looked up in ``A2PGetSmsHistory`` (found: accepted; not
        found: sent again) and throttled requests are sent again. It must exceed the time the
        history can lag behind processing, which Voximplant does not document; the default of
        60 s is the hook's read timeout, so a request that was still being processed when the
        client gave up has finished too.
    :param settle_rounds: settle rounds at most; numbers still open after them are ``unknown``
        (or ``not_sent``). 0 turns settling off.
    :param allow_unknown: succeed even when numbers end ``unknown``. By default such a run
        fails: with a ledger as a retryable failure (the retry settles them again), without
        one with no retry (a retry would send them again).
    :param hook_params: keyword arguments for :class:`VoximplantHook` (``max_attempts``,
        ``backoff_initial_s``, ``backoff_max_s``, ``connect_timeout_s``, ``read_timeout_s``).
    :param ledger_conn_id: SQL connection (SQLite, PostgreSQL, ...) for the send ledger that
        makes retries and cleared tasks of the same DAG run safe: they skip what earlier tries
        settled and settle what they left open before sending anything again. Strongly
        recommended.
    :param suppression_list: opt-out numbers never to text: a list, Series or DataFrame (its
        ``phone`` column, else its first), or an XComArg of one; normalised like recipients.
        (templated)
    :param suppression_sql: a query whose first column holds opt-out numbers, run on
        ``suppression_conn_id`` (any common-sql connection). (templated)
    :param suppression_conn_id: the connection for ``suppression_sql``.
    :param send_window: ``("09:00", "20:00")``: send to a row only while the recipient's local
        time is in ``[start, end)`` (it may cross midnight), in every time zone of the number.
    :param window_timezone: the zone for numbers whose zone ``phonenumbers`` does not know.
    :param outside_window: ``"skip"``: rows outside the window are not sent and are listed in
        ``deferred_numbers``; ``"wait"``: send what is inside, wait for the next window (in
        the triggerer when ``deferrable``), and go on until every row is sent (needs
        ``ledger_conn_id``: each wait resumes from the ledger).
    :param deferrable: wait for send windows in the triggerer instead of a worker slot.
    :param max_segments: refuse to start when the planned segments exceed this.
    :param ledger_table: prefix of the send ledger's tables (``<prefix>_leases``, ``_claims``,
        ``_outcomes``), created if absent.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "recipients_sql",
        "recipients_path",
        "text",
        "text_column",
        "src_number",
        "phone_column",
        "default_region",
        "suppression_list",
        "suppression_sql",
    )
    ui_color = "#d6eaff"

    def __init__(
        self,
        *,
        src_number: str,
        recipients: Any = None,
        recipients_sql: str | None = None,
        recipients_conn_id: str | None = None,
        recipients_path: str | None = None,
        recipients_chunk_rows: int = DEFAULT_CHUNK_ROWS,
        results_conn_id: str | None = None,
        results_table_prefix: str = "voxsms_results",
        text: str | None = None,
        text_column: str | None = None,
        phone_column: str = "phone",
        default_region: str | None = None,
        number_check: str = "possible",
        voximplant_conn_id: str = VoximplantHook.default_conn_name,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int = 16,
        requests_per_second: float | None = None,
        store_body: bool = False,
        dry_run: bool = False,
        max_recipients: int | None = None,
        fail_on_failed_ratio: float | None = None,
        settle_delay_s: float = 60.0,
        settle_rounds: int = 3,
        allow_unknown: bool = False,
        hook_params: dict[str, Any] | None = None,
        ledger_conn_id: str | None = None,
        ledger_table: str = "voxsms_send_ledger",
        suppression_list: Any = None,
        suppression_sql: str | None = None,
        suppression_conn_id: str | None = None,
        send_window: tuple[str, str] | None = None,
        window_timezone: str = "UTC",
        outside_window: str = "skip",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_segments: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        sources = [recipients is not None, recipients_sql is not None, recipients_path is not None]
        if sum(sources) != 1:
            raise ValueError(
                f"{self.task_id}: give exactly one of recipients= (rows or an XComArg), "
                "recipients_sql= (with recipients_conn_id) or recipients_path= (CSV or Parquet)."
            )
        if (recipients_sql is None) != (recipients_conn_id is None):
            raise ValueError(
                f"{self.task_id}: recipients_sql and recipients_conn_id go together (the query "
                "and the connection it runs on)."
            )
        if isinstance(recipients_chunk_rows, bool) or recipients_chunk_rows < 1:
            raise ValueError(
                f"{self.task_id}: recipients_chunk_rows must be >= 1, got {recipients_chunk_rows}."
            )
        if results_conn_id is not None:
            try:
                outcomes_table(results_table_prefix)
            except ValueError as err:
                raise ValueError(f"{self.task_id}: results_table_prefix: {err}") from None
        if (text is None) == (text_column is None):
            raise ValueError(
                f"{self.task_id}: give exactly one of text= (one message for all) or "
                "text_column= (a column holding each row's message)."
            )
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"{self.task_id}: batch_size must be 1..{MAX_BATCH_SIZE} "
                f"(A2PSendSms takes at most 100 numbers per request), got {batch_size}."
            )
        if max_concurrency < 1:
            raise ValueError(
                f"{self.task_id}: max_concurrency must be >= 1, got {max_concurrency}."
            )
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError(
                f"{self.task_id}: requests_per_second must be > 0 or None, got {requests_per_second}."
            )
        if fail_on_failed_ratio is not None and not 0 <= fail_on_failed_ratio <= 1:
            raise ValueError(
                f"{self.task_id}: fail_on_failed_ratio is a share in 0..1, got {fail_on_failed_ratio}."
            )
        if settle_delay_s < 0 or settle_rounds < 0:
            raise ValueError(
                f"{self.task_id}: settle_delay_s and settle_rounds must not be negative, got "
                f"{settle_delay_s} and {settle_rounds}."
            )
        if (suppression_sql is None) != (suppression_conn_id is None):
            raise ValueError(
                f"{self.task_id}: suppression_sql and suppression_conn_id go together (the query "
                "and the connection it runs on); give both or neither."
            )
        try:
            self.window = SendWindow.parse(send_window, window_timezone) if send_window else None
        except ValueError as err:
            raise ValueError(f"{self.task_id}: {err}") from None
        if outside_window not in ("skip", "wait"):
            raise ValueError(
                f"{self.task_id}: outside_window is 'skip' or 'wait', got {outside_window!r}."
            )
        if outside_window == "wait" and not (send_window and ledger_conn_id):
            raise ValueError(
                f"{self.task_id}: outside_window='wait' needs send_window and ledger_conn_id: "
                "the task resumes from the send ledger after each wait, so nothing is sent twice."
            )
        if max_segments is not None and (isinstance(max_segments, bool) or max_segments < 1):
            raise ValueError(f"{self.task_id}: max_segments must be >= 1, got {max_segments}.")
        self.suppression_list = suppression_list
        self.suppression_sql = suppression_sql
        self.suppression_conn_id = suppression_conn_id
        self.send_window = send_window
        self.window_timezone = window_timezone
        self.outside_window = outside_window
        self.deferrable = deferrable
        self.max_segments = max_segments
        self.src_number = src_number
        self.recipients = recipients
        self.recipients_sql = recipients_sql
        self.recipients_conn_id = recipients_conn_id
        self.recipients_path = recipients_path
        self.recipients_chunk_rows = recipients_chunk_rows
        self.results_conn_id = results_conn_id
        self.results_table_prefix = results_table_prefix
        self.text = text
        self.text_column = text_column
        self.phone_column = phone_column
        self.default_region = default_region
        self.number_check = number_check
        self.voximplant_conn_id = voximplant_conn_id
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.store_body = store_body
        self.dry_run = dry_run
        self.max_recipients = max_recipients
        self.fail_on_failed_ratio = fail_on_failed_ratio
        self.settle_delay_s = settle_delay_s
        self.settle_rounds = settle_rounds
        self.allow_unknown = allow_unknown
        self.hook_params = hook_params or {}
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    @cached_property
    def hook(self) -> VoximplantHook:
        params = {"pool_size": self.max_concurrency, **self.hook_params}
        return VoximplantHook(self.voximplant_conn_id, **params)

    def execute(self, context) -> dict:
        try:
            while True:
                result = self._execute(context)
                if isinstance(result, dict):
                    return result
                self._wait_for_window(result)
        except InputError as err:  # a retry cannot fix the input: fail without retries
            raise AirflowFailException(str(err)) from err

    def execute_next_window(self, context, event: Any = None) -> dict:
        """Resumed when the next send window opened: the campaign goes on from the ledger."""
        return self.execute(context)

    def _wait_for_window(self, seconds: float) -> None:
        """Wait until the next send window opens: in the triggerer, or sleeping here."""
        opens = datetime.now(UTC) + timedelta(seconds=seconds)
        self.log.info("Waiting %.0f s for the next send window (%s)", seconds, opens.isoformat())
        if self.deferrable:
            self.defer(trigger=DateTimeTrigger(moment=opens), method_name="execute_next_window")
        time.sleep(seconds)

    def _execute(self, context) -> dict | float:
        """One pass over the recipients, a chunk at a time: prepare, filter, send what may be
        sent now. Returns the summary, or (in ``outside_window="wait"`` mode) the seconds until
        the next window opens for the rows still held back."""
        started = time.monotonic()
        self._check_static()
        opted_out = self._opt_outs()
        now = window_clock.utc_now()
        streamed = self._streamed
        if streamed and self._needs_totals:  # guards that need the whole input: read it once
            self._check_totals(*self._totals_of(self._chunks(), opted_out, now))
        results = (
            ResultsTable(
                self.results_conn_id,
                self.results_table_prefix,
                TaskInstanceKey.from_context(context).columns,
            )
            if self.results_conn_id
            else None
        )
        state = _PassState(
            opted_out=opted_out,
            now=now,
            seen=SeenKeys() if streamed else None,
            texts=SeenKeys(),
            results=results,
        )
        ledger = self._ledger(context) if not self.dry_run else nullcontext(None)
        try:
            with ledger as state.ledger, results or nullcontext():
                for chunk in self._chunks():
                    self._pass_chunk(chunk, state, check_totals=not streamed)
        except LedgerError as err:  # the ledger's last commit failed after the sending
            if not state.summaries:
                raise
            state.stopped = state.stopped or err
        if self._waiting(state):
            return max(0.0, (state.next_window - window_clock.utc_now()).total_seconds())

        summary = run_report.add_up(state.summaries, dry_run=self.dry_run)
        summary["distinct_texts"] = len(state.texts)
        summary["duration_s"] = round(time.monotonic() - started, 3)
        if state.stopped is not None:
            summary["stopped_by"] = str(state.stopped)
        self._push_outputs(context["ti"], state, summary)
        self.log.info("Result: %s", summary)

        if state.stopped is not None:
            self._fail_after_stop(state.stopped, summary)
        self._check_unknown(summary)
        self._check_failed_ratio(summary)
        return summary

    @property
    def _streamed(self) -> bool:
        return self.recipients_sql is not None or self.recipients_path is not None

    @property
    def _needs_totals(self) -> bool:
        return (
            self.max_recipients is not None
            or self.max_segments is not None
            or (self.outside_window == "wait" and self.window is not None)
        )

    def _chunks(self) -> Iterator[Any]:
        """The recipients as given (one chunk), or read from SQL or files in chunks."""
        if not self._streamed:
            return iter([self.recipients])
        return recipient_chunks(
            sql=self.recipients_sql,
            conn_id=self.recipients_conn_id,
            path=self.recipients_path,
            chunk_rows=self.recipients_chunk_rows,
        )

    def _prepare(self, chunk, seen: SeenKeys | None):
        """A chunk's rows normalised and checked, without copies of rows earlier chunks had."""
        prepared = prepare_recipients(
            chunk,
            phone_column=self.phone_column,
            text=self.text,
            text_column=self.text_column,
            default_region=self.default_region,
            number_check=self.number_check,
        )
        if seen is not None:
            valid = prepared.valid
            plain_text = self.text_column is None and parse_template(self.text) is None
            keys = pair_keys(valid["phone"], None if plain_text else valid["text"])
            prepared = prepared.drop_copies(seen.take(keys))
        return prepared

    def _pass_chunk(self, chunk, state: _PassState, *, check_totals: bool) -> None:
        """Prepare one chunk, send what may be sent, and keep its counts and outcome rows."""
        prepared = self._prepare(chunk, state.seen)
        valid = prepared.valid
        suppressed = state.opted_out.matches(valid["phone"]).to_numpy(bool)
        is_outside = self._outside_window(state.now)
        outside = ~suppressed & (is_outside(valid) if is_outside else False)
        plan = plan_batches(valid[~suppressed & ~outside], self.batch_size)
        planned = valid["text"][~suppressed & ~outside]
        state.texts.take(np.unique(text_keys(planned)))
        self.log.info(
            "Prepared%s: %d rows -> %d valid (%d invalid, %d duplicates, %d suppressed, %d "
            "outside the send window); %d distinct text(s); %s",
            f" chunk {len(state.summaries) + 1}" if state.seen is not None else "",
            prepared.total,
            len(valid),
            len(prepared.invalid),
            prepared.duplicates,
            int(suppressed.sum()),
            int(outside.sum()),
            plan.texts,
            plan.summary(),
        )
        if invalid := run_report.invalid_summary(prepared):
            self.log.warning(
                "%d invalid row(s), never sent (all in the XCom 'failed_numbers'): %s",
                len(prepared.invalid),
                "; ".join(invalid),
            )
        if check_totals:
            self._check_totals(*self._would_send(valid, suppressed, outside, state.now))

        def hold(rows):
            """Rows not to send now: opted out, or outside their window at this moment (a
            settle round's re-sends are judged when they go). Applied after the ledger's
            resume, so what an earlier pass or try settled keeps its outcome."""
            held = state.opted_out.matches(rows["phone"]).to_numpy(bool)
            if self.window is None:
                return held
            return held | self._outside_window(window_clock.utc_now())(rows)

        report = None
        if not self.dry_run and len(valid):
            if state.stopped is None:
                report = self._send(valid, state.ledger, hold)
                state.stopped = report.stopped_by
            else:  # an earlier chunk's stop: these rows were never sent
                report = stopped_before(valid, state.stopped, hold)
            kept_back = report.held
            opted = state.opted_out.matches(kept_back["phone"]).to_numpy(bool)
            suppressed_rows, held = kept_back[opted], kept_back[~opted]
        else:
            suppressed_rows, held = valid[suppressed], valid[outside]
        if len(held) and self.window is not None:
            starts = assess(held["phone"], self.window, window_clock.utc_now())
            first = starts["next_window_start"].dropna().min()
            if pd.notna(first) and (state.next_window is None or first < state.next_window):
                state.next_window = first
        state.held += len(held)
        state.summaries.append(
            run_report.summarise(
                prepared,
                plan,
                report,
                suppressed=len(suppressed_rows),
                outside_window=len(held),
                dry_run=self.dry_run,
                duration_s=0.0,
            )
        )
        if self._waiting(state):
            return  # the rows go out in a later window: their outcomes are not final yet
        deferred = run_report.deferred_numbers(held, self.window, state.now)
        if state.results is not None:
            state.results.write(
                run_report.outcome_rows(
                    prepared, report, suppressed=suppressed_rows, deferred=deferred
                )
            )
            return
        state.outputs["failed_numbers"].append(run_report.failed_numbers(prepared, report))
        state.outputs["accepted_numbers"].append(run_report.accepted_numbers(report))
        state.outputs["unknown_numbers"].append(run_report.unknown_numbers(report))
        state.outputs["deferred_numbers"].append(deferred)

    def _waiting(self, state: _PassState) -> bool:
        """True when this pass ends in a wait for the next window (wait mode, rows held)."""
        waiting = self.outside_window == "wait" and not self.dry_run and state.held
        return bool(waiting) and state.stopped is None

    def _push_outputs(self, ti, state: _PassState, summary: dict) -> None:
        """The output XComs: the rows themselves, or where they are in the results table."""
        if state.results is not None:
            summary["results"] = state.results.location()
            counts = {
                key: sum(summary[OUTCOME_SUMMARY_KEYS[o]] for o in outcomes)
                for key, outcomes in XCOM_OUTCOMES.items()
            }
            for key, outcomes in XCOM_OUTCOMES.items():
                ti.xcom_push(key=key, value=state.results.location(outcomes, counts[key]))
            return
        outputs = {
            key: pd.concat(frames, ignore_index=True) for key, frames in state.outputs.items()
        }
        big = {key: len(frame) for key, frame in outputs.items() if len(frame) > XCOM_ROWS_WARNING}
        if big:
            self.log.warning(
                "XCom(s) %s hold more than %d rows each: Airflow's metadata database is not made "
                "for that. Set results_conn_id to write the rows to tables instead (and read "
                "large lists with recipients_sql / recipients_path).",
                big,
                XCOM_ROWS_WARNING,
            )
        for key, frame in outputs.items():
            ti.xcom_push(key=key, value=frame)

    def _opt_outs(self) -> OptOuts:
        lists = [self.suppression_list]
        if self.suppression_sql:
            lists.append(first_column(self.suppression_conn_id, self.suppression_sql))
        opted_out = opt_outs(
            lists, default_region=self.default_region, number_check=self.number_check
        )
        if opted_out.unusable and not len(opted_out.numbers):
            raise RecipientsError(
                f"None of the {opted_out.unusable} opt-out entries is a usable phone number, so "
                "suppression would do nothing: check suppression_list / suppression_sql (a "
                "DataFrame's 'phone' column is used, else its first column); nothing was sent."
            )
        if opted_out.unusable:
            self.log.warning(
                "%d opt-out entr(ies) are not usable phone numbers and suppress nothing",
                opted_out.unusable,
            )
        return opted_out

    def _outside_window(self, now: datetime):
        """Which rows are outside their send window at ``now`` (None: no window)."""
        if self.window is None:
            return None
        window = self.window
        return lambda rows: ~assess(rows["phone"], window, now)["inside"].to_numpy(bool)

    def _check_static(self) -> None:
        """What is wrong whatever the recipients: no sender, outputs this Airflow cannot hold."""
        if not str(self.src_number or "").strip():
            raise RecipientsError("src_number (the SenderID) is empty; nothing was sent.")
        if self.results_conn_id is None and (problem := dataframe_xcoms_unsupported()):
            raise AirflowFailException(
                f"{problem}, and A2PSendSmsOperator pushes its outputs "
                "as DataFrames. Install pandas<3, upgrade to Airflow 3.3 or later, or set "
                "results_conn_id (outputs in tables). Nothing was sent."
            )

    def _totals_of(self, chunks, opted_out: OptOuts, now: datetime) -> tuple:
        """What the whole streamed input would send: numbers, segments and the rows whose
        window never opens (a first read, before anything is sent)."""
        seen, numbers, segments, never = SeenKeys(), 0, 0, []
        for chunk in chunks:
            valid = self._prepare(chunk, seen).valid
            suppressed = opted_out.matches(valid["phone"]).to_numpy(bool)
            is_outside = self._outside_window(now)
            outside = ~suppressed & (is_outside(valid) if is_outside else False)
            count, chunk_segments, chunk_never = self._would_send(valid, suppressed, outside, now)
            numbers, segments = numbers + count, segments + chunk_segments
            never.append(chunk_never)
        return numbers, segments, pd.concat(never, ignore_index=True)

    def _would_send(self, valid, suppressed, outside, now: datetime) -> tuple:
        """Numbers and segments these rows would send, and those whose window never opens."""
        sendable, outside = valid[~suppressed], outside[~suppressed]
        to_send = sendable if self.outside_window == "wait" else sendable[~outside]
        segments = plan_batches(to_send, self.batch_size).total_segments
        never = run_report.deferred_numbers(sendable[outside], self.window, now)
        if self.outside_window != "wait":
            never = never.iloc[:0]
        return len(to_send), segments, never[never["next_window_start"].isna()]

    def _check_totals(self, numbers: int, segments: int, never: pd.DataFrame) -> None:
        """The guards that refuse to start: size, budget, windows that never open."""
        if self.max_recipients is not None and numbers > self.max_recipients:
            raise RecipientsError(
                f"{numbers} numbers would be sent, more than max_recipients="
                f"{self.max_recipients}. Raise max_recipients or split the list; nothing was sent."
            )
        if self.max_segments is not None and segments > self.max_segments:
            raise RecipientsError(
                f"{segments} segments would be sent, more than max_segments="
                f"{self.max_segments} ({numbers} messages). Raise max_segments, shorten the "
                "text or split the list; nothing was sent."
            )
        if len(never):
            raise RecipientsError(
                f"{len(never)} number(s) are never inside send_window={self.send_window} in "
                f"all their time zones at once (e.g. {never['destination_number'].iloc[0]}: "
                f"{never['time_zone'].iloc[0]}), so outside_window='wait' would wait forever. "
                "Widen the window or use outside_window='skip'; nothing was sent."
            )

    def _ledger(self, context):
        """The send ledger to open around the sending (an unreachable one fails before any SMS)."""
        if self.ledger_conn_id:
            key = TaskInstanceKey.from_context(context)
            return SendLedger(self.ledger_conn_id, key, self.ledger_table)
        self.log.warning(
            "No ledger_conn_id: if this task is retried or cleared, numbers that were "
            "already sent will be sent again. Set ledger_conn_id to make retries safe."
        )
        return nullcontext(None)

    def _send(self, valid, ledger: SendLedger | None, hold) -> CampaignReport:
        """Run the campaign for these rows, through the open send ledger when there is one."""
        self.hook.check_config()
        settings = CampaignSettings(
            src_number=self.src_number,
            store_body=self.store_body,
            batch_size=self.batch_size,
            max_concurrency=self.max_concurrency,
            requests_per_second=self.requests_per_second,
            settle_delay_s=self.settle_delay_s,
            settle_rounds=self.settle_rounds,
        )
        return run_campaign(
            valid,
            self.hook,
            settings,
            ledger=ledger,
            previous=ledger.previous if ledger else None,
            logger=self.log,
            hold=hold,
        )

    def _fail_after_stop(self, error: BaseException, summary: dict) -> None:
        message = (
            f"Sending stopped: {error}. Accepted: {summary['accepted']}; not sent: "
            f"{summary['not_sent']}; unknown: {summary['unknown']}. Full result: {summary}"
        )
        resumable = isinstance(error, LedgerError) or (
            isinstance(error, VoximplantApiError) and error.code in RESUMABLE_CODES
        )
        if self.ledger_conn_id and resumable:
            # The ledger makes a retry safe: it sends only what this try did not.
            raise CampaignStoppedError(message + " A retry resumes from the send ledger.")
        # Without a ledger a retry would re-send what was accepted; other stops need a fix first.
        raise AirflowFailException(message)

    def _check_unknown(self, summary: dict) -> None:
        if not summary["unknown"] or self.allow_unknown:
            return
        message = (
            f"{summary['unknown']} number(s) have an unknown outcome: their requests may or may "
            "not have been processed, and the history could not settle them. They are listed in "
            "the XCom 'unknown_numbers'."
        )
        if self.ledger_conn_id:
            raise CampaignStoppedError(
                message + " A retry settles them again through the send ledger and the history."
            )
        raise AirflowFailException(
            message + " Without a ledger a retry would send the whole list again, so the task "
            "is not retried: check them in A2PGetSmsHistory, or set ledger_conn_id (retries "
            "then settle them) or allow_unknown=True."
        )

    def _check_failed_ratio(self, summary: dict) -> None:
        if self.fail_on_failed_ratio is None:
            return
        considered = (
            summary["recipients"]
            - summary["duplicates"]
            - summary["suppressed"]
            - summary["outside_window"]
        )
        refused = summary["failed"] + summary["not_sent"] + summary["invalid"]
        ratio = refused / considered if considered else 0.0
        if ratio > self.fail_on_failed_ratio:
            raise AirflowFailException(
                f"{ratio:.1%} of recipients failed, were not sent or were invalid, above "
                f"fail_on_failed_ratio={self.fail_on_failed_ratio:.1%}. Result: {summary}"
            )
