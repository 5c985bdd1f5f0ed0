"""A2PSendSmsOperator: one SMS campaign to the recipients an upstream task produced."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_voxsms import lineage
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
from airflow_provider_voxsms.operators.connections import check_connections
from airflow_provider_voxsms.operators.send_arguments import check_arguments, seconds
from airflow_provider_voxsms.sms.campaign import CampaignSettings
from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE
from airflow_provider_voxsms.sms.report import OUTCOME_SUMMARY_KEYS, XCOM_OUTCOMES, RowsInMemory
from airflow_provider_voxsms.sms.runner import CampaignRunner, PassResult, RunnerSettings
from airflow_provider_voxsms.sms.suppression import OptOuts, opt_outs
from airflow_provider_voxsms.sms.variants import Variants
from airflow_provider_voxsms.storage.key import CampaignKey
from airflow_provider_voxsms.storage.ledger import SendLedger
from airflow_provider_voxsms.storage.results import ResultsTable
from airflow_provider_voxsms.storage.source import DEFAULT_CHUNK_ROWS, recipient_chunks
from airflow_provider_voxsms.storage.sql import first_column

# Output rows per XCom above which the task warns: a million-row XCom is a million-row blob in
# the metadata database, read again by every downstream task that pulls it.
XCOM_ROWS_WARNING = 100_000


class A2PSendSmsOperator(BaseOperator):
    """Send an A2P SMS to every valid recipient once, in batches of at most 100, concurrently.

    The campaign itself runs in :class:`~airflow_provider_voxsms.sms.runner.CampaignRunner`;
    this operator maps its parameters to the runner's settings and wires Airflow to it
    (connections, the ledger, the results table or XComs, waits in the triggerer, failures).
    Recipients are normalised to international digits, invalid rows are reported and never sent,
    and duplicates (same number, same text) are sent once. Ambiguous answers are settled through
    the API's history once every chunk is sent, before the task ends. Before anything is planned, rows are sorted out in
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
    :param dedupe: ``"number"`` (default): one message per person, the first row of a number
        wins and later rows are ``duplicate`` whatever their text (the log counts the numbers
        whose rows had different texts); ``"number_and_text"``: a number may get several
        different texts (notices), each once.
    :param smart_encoding: replace characters that alone force UCS-2 (curly quotes, dashes,
        ellipsis, special spaces...) by their GSM-7 look-alikes when that makes the whole text
        GSM-7; return keys ``smart_encoded`` and ``segments_saved``. Without it the plan warns
        which characters cost segments.
    :param frequency_cap: ``(count, timedelta)``: at most ``count`` messages per number within
        that trailing window over every campaign that uses the same ledger, judged when the
        number is claimed; numbers over it end ``capped``. Needs ``ledger_conn_id``.
    :param validity_period: a ``timedelta`` or seconds: rows not sent within this time of the
        campaign's first start (as the ledger recorded it; without a ledger, this try's start)
        end ``expired`` and are never sent (retries, waits and settle re-sends included).
    :param text_variants: ``{"A": "...", "B": "..."}``: texts by variant (templates allowed;
        instead of ``text``/``text_column``). Each number's variant comes from a stable hash of
        ``variant_seed`` and the normalised number, so retries, clears and later runs give a
        number the same variant. The results table and ``accepted_numbers`` get ``variant``;
        the return value gets ``variants`` (``{name: {"recipients": n, "accepted": n}}``).
        (templated)
    :param variant_weights: ``{"A": 1, "B": 3}``: relative shares (default equal).
    :param holdout: a share (0 to 0.5) of numbers never sent, to compare with: outcome and
        return key ``held_out``, variant ``holdout``.
    :param variant_seed: the hash's seed (default ``"<dag_id>.<task_id>"``); a new seed draws
        the variants anew.
    :param campaign_id: which campaign this task instance's sends belong to in the ledger and
        the results table (templated). Default: the DAG run's logical date, else its run id,
        so re-running the same interval resumes the same campaign and sends nobody twice; set
        a new value to send again on purpose.
    :param ledger_table: prefix of the send ledger's tables (``<prefix>_leases``, ``_claims``,
        ``_outcomes``), created if absent.
    :param log_numbers: how log lines and errors show recipients' numbers: ``"masked"``
        (default: ``+44 ******** 12``) or ``"full"``. Outputs keep full numbers.
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
        "campaign_id",
        "text_variants",
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
        campaign_id: str | None = None,
        dedupe: str = "number",
        smart_encoding: bool = False,
        frequency_cap: tuple[int, timedelta] | None = None,
        validity_period: timedelta | float | None = None,
        text_variants: dict[str, str] | None = None,
        variant_weights: dict[str, float] | None = None,
        holdout: float = 0.0,
        variant_seed: str | None = None,
        log_numbers: str = "masked",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
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
        self.suppression_list = suppression_list
        self.suppression_sql = suppression_sql
        self.suppression_conn_id = suppression_conn_id
        self.send_window = send_window
        self.window_timezone = window_timezone
        self.outside_window = outside_window
        self.deferrable = deferrable
        self.max_segments = max_segments
        self.campaign_id = campaign_id
        self.dedupe = dedupe
        self.smart_encoding = smart_encoding
        self.frequency_cap = frequency_cap
        self.validity_period = validity_period
        self.text_variants = text_variants
        self.variant_weights = variant_weights
        self.holdout = holdout
        self.variant_seed = variant_seed
        self.log_numbers = log_numbers
        self.window = check_arguments(self)

    @cached_property
    def hook(self) -> VoximplantHook:
        params = {"pool_size": self.max_concurrency, **self.hook_params}
        return VoximplantHook(self.voximplant_conn_id, **params)

    def execute(self, context) -> dict:
        check_connections(  # the ones this run will use, before any request
            voximplant_conn_id=not self.dry_run and self.voximplant_conn_id,
            recipients_conn_id=self.recipients_sql and self.recipients_conn_id,
            suppression_conn_id=self.suppression_sql and self.suppression_conn_id,
            results_conn_id=self.results_conn_id,
            ledger_conn_id=not self.dry_run and self.ledger_conn_id,
        )
        try:
            while True:
                result, sink = self._run_pass(context)
                if result.wait_s is None:
                    return self._finish(context["ti"], result, sink)
                self._wait_for_window(result.wait_s)
        except InputError as err:  # a retry cannot fix the input: fail without retries
            raise AirflowFailException(str(err)) from err

    def execute_next_window(self, context, event: Any = None) -> dict:
        """Resumed when the next send window opened: the campaign goes on from the ledger."""
        return self.execute(context)

    def get_openlineage_facets_on_complete(self, task_instance):
        """OpenLineage: the recipients and opt-outs read, the results table written, the
        counts returned (:mod:`airflow_provider_voxsms.lineage`)."""
        return lineage.send_lineage(self)

    def get_openlineage_facets_on_failure(self, task_instance):
        """As on completion; the counts when the task failed after it had them."""
        return lineage.send_lineage(self)

    def _run_pass(self, context) -> tuple[PassResult, Any]:
        """One pass of the runner over the recipients, inside the ledger and the results sink."""
        self._check_static()
        opted_out = self._opt_outs()
        sink = self._sink(context)
        runner = CampaignRunner(
            self._settings(), api=self.hook, sink=sink, opted_out=opted_out, logger=self.log
        )
        result = None
        try:
            with ExitStack() as stack:
                runner.ledger = stack.enter_context(self._ledger(context))
                if isinstance(sink, ResultsTable):
                    stack.enter_context(sink)
                result = runner.run(self._chunks, streamed=self._streamed)
        except LedgerError as err:  # the ledger's last commit failed after the sending
            if result is None:
                raise
            result.stopped_by = result.stopped_by or err
            result.summary["stopped_by"] = str(result.stopped_by)
        return result, sink

    def _settings(self) -> RunnerSettings:
        """The runner's settings from the (rendered) parameters."""
        return RunnerSettings(
            sending=CampaignSettings(
                src_number=self.src_number,
                store_body=self.store_body,
                batch_size=self.batch_size,
                max_concurrency=self.max_concurrency,
                requests_per_second=self.requests_per_second,
                settle_delay_s=self.settle_delay_s,
                settle_rounds=self.settle_rounds,
            ),
            phone_column=self.phone_column,
            text=self.text,
            text_column=self.text_column,
            default_region=self.default_region,
            number_check=self.number_check,
            window=self.window,
            wait_for_window=self.outside_window == "wait",
            dry_run=self.dry_run,
            max_recipients=self.max_recipients,
            max_segments=self.max_segments,
            dedupe=self.dedupe,
            smart_encoding=self.smart_encoding,
            validity_s=seconds(self.validity_period),
            variants=self._variants(),
            log_numbers=self.log_numbers,
        )

    def _variants(self) -> Variants | None:
        """The (rendered) text variants, or None for a campaign of ``text``/``text_column``."""
        if self.text_variants is None:
            return None
        seed = self.variant_seed or f"{self.dag_id}.{self.task_id}"
        try:
            return Variants.parse(self.text_variants, self.variant_weights, self.holdout, seed=seed)
        except ValueError as err:
            raise RecipientsError(f"{err}; nothing was sent.") from None

    def _finish(self, ti, result: PassResult, sink) -> dict:
        """Push the outputs, log the result and fail the task if the campaign fell short."""
        summary = result.summary
        self._summary = summary  # for OpenLineage's run facet, also when a check below fails
        self._push_outputs(ti, sink, summary)
        self.log.info("Result: %s", summary)
        if result.stopped_by is not None:
            self._fail_after_stop(result.stopped_by, summary)
        self._check_unknown(summary)
        self._check_failed_ratio(summary)
        return summary

    def _wait_for_window(self, seconds: float) -> None:
        """Wait until the next send window opens: in the triggerer, or sleeping here."""
        opens = datetime.now(UTC) + timedelta(seconds=seconds)
        self.log.info("Waiting %.0f s for the next send window (%s)", seconds, opens.isoformat())
        if self.deferrable:
            self.defer(trigger=DateTimeTrigger(moment=opens), method_name="execute_next_window")
        time.sleep(seconds)

    @property
    def _streamed(self) -> bool:
        return self.recipients_sql is not None or self.recipients_path is not None

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

    def _sink(self, context):
        """Where the outcome rows go: the results table, or memory (for the XComs)."""
        if not self.results_conn_id:
            return RowsInMemory()
        key = CampaignKey.from_context(context, self.campaign_id)
        return ResultsTable(self.results_conn_id, self.results_table_prefix, key)

    def _ledger(self, context):
        """The send ledger to open around the sending (an unreachable one fails before any SMS)."""
        if self.ledger_conn_id and not self.dry_run:
            key = CampaignKey.from_context(context, self.campaign_id)
            return SendLedger(
                self.ledger_conn_id, key, self.ledger_table, frequency_cap=self.frequency_cap
            )
        if not self.dry_run:
            self.log.warning(
                "No ledger_conn_id: if this task is retried or cleared, numbers that were "
                "already sent will be sent again. Set ledger_conn_id to make retries safe."
            )
        return nullcontext()

    def _push_outputs(self, ti, sink, summary: dict) -> None:
        """The output XComs: the rows themselves, or where they are in the results table."""
        if isinstance(sink, ResultsTable):
            summary["results"] = sink.location()
            for key, outcomes in XCOM_OUTCOMES.items():
                count = sum(summary[OUTCOME_SUMMARY_KEYS[o]] for o in outcomes)
                ti.xcom_push(key=key, value=sink.location(outcomes, count))
            return
        outputs = sink.xcom_frames()
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
