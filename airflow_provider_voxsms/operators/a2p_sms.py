"""A2PSendSmsOperator: one SMS campaign to the recipients an upstream task produced."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from functools import cached_property
from typing import Any

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
from airflow_provider_voxsms.sms import report as run_report
from airflow_provider_voxsms.sms.campaign import CampaignSettings, run_campaign
from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE, CampaignReport
from airflow_provider_voxsms.sms.plan import plan_batches
from airflow_provider_voxsms.sms.recipients import prepare_recipients


class A2PSendSmsOperator(BaseOperator):
    """Send an A2P SMS to every valid recipient once, in batches of at most 100, concurrently.

    Recipients are normalised to international digits, invalid rows are reported and never sent,
    and duplicates (same number, same text) are sent once. Ambiguous answers are settled through
    the API's history before the task ends. Every recipient ends as exactly one of accepted,
    failed, not sent, unknown, invalid or duplicate; the counts add up to the input rows.

    Returns a summary dict (``recipients``, ``valid``, ``invalid``, ``duplicates``, ``batches``,
    ``accepted``, ``failed``, ``not_sent``, ``unknown``, ``earlier``, ``reconciled``, ``resent``,
    ``fragments``, ``duration_s``, ``dry_run``) and pushes the XComs ``failed_numbers``
    (``destination_number``, ``error_code``, ``error_description``, ``stage``),
    ``accepted_numbers`` (``destination_number``, ``message_id``) and ``unknown_numbers``
    (``destination_number``, ``reason``).

    :param src_number: the SenderID the SMS come from. (templated)
    :param recipients: a DataFrame, Series, list of numbers or list of dicts, or an XComArg of
        one. (templated)
    :param text: one message for everybody. Give this or ``text_column``. (templated)
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
    :param ledger_table: prefix of the send ledger's tables (``<prefix>_leases``, ``_claims``,
        ``_outcomes``), created if absent.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "text",
        "text_column",
        "src_number",
        "phone_column",
        "default_region",
    )
    ui_color = "#d6eaff"

    def __init__(
        self,
        *,
        src_number: str,
        recipients: Any,
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
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
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
        self.src_number = src_number
        self.recipients = recipients
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
            return self._execute(context)
        except InputError as err:  # a retry cannot fix the input: fail without retries
            raise AirflowFailException(str(err)) from err

    def _execute(self, context) -> dict:
        started = time.monotonic()
        prepared = prepare_recipients(
            self.recipients,
            phone_column=self.phone_column,
            text=self.text,
            text_column=self.text_column,
            default_region=self.default_region,
            number_check=self.number_check,
        )
        plan = plan_batches(prepared.valid, self.batch_size)
        self.log.info(
            "Prepared: %d rows -> %d valid (%d invalid, %d duplicates); %s",
            prepared.total,
            len(prepared.valid),
            len(prepared.invalid),
            prepared.duplicates,
            plan.summary(),
        )
        if invalid := run_report.invalid_summary(prepared):
            self.log.warning(
                "%d invalid row(s), never sent (all in the XCom 'failed_numbers'): %s",
                len(prepared.invalid),
                "; ".join(invalid),
            )
        if self.max_recipients is not None and len(prepared.valid) > self.max_recipients:
            raise RecipientsError(
                f"{len(prepared.valid)} numbers would be sent, more than max_recipients="
                f"{self.max_recipients}. Raise max_recipients or split the list; nothing was sent."
            )
        if not str(self.src_number or "").strip():
            raise RecipientsError("src_number (the SenderID) is empty; nothing was sent.")
        if problem := dataframe_xcoms_unsupported():
            raise AirflowFailException(
                f"{problem}, and A2PSendSmsOperator pushes its outputs "
                "as DataFrames. Install pandas<3 or upgrade to Airflow 3.3 or later. Nothing "
                "was sent."
            )

        report = None
        if not self.dry_run and plan.batches:
            report = self._send(prepared.valid, context)
        summary = run_report.summarise(
            prepared,
            plan,
            report,
            dry_run=self.dry_run,
            duration_s=time.monotonic() - started,
        )
        ti = context["ti"]
        ti.xcom_push(key="failed_numbers", value=run_report.failed_numbers(prepared, report))
        ti.xcom_push(key="accepted_numbers", value=run_report.accepted_numbers(report))
        ti.xcom_push(key="unknown_numbers", value=run_report.unknown_numbers(report))
        self.log.info("Result: %s", summary)

        if report is not None and report.stopped_by is not None:
            self._fail_after_stop(report.stopped_by, summary)
        self._check_unknown(summary)
        self._check_failed_ratio(summary)
        return summary

    def _send(self, valid, context) -> CampaignReport:
        """Run the campaign, through the send ledger when there is one."""
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
        if self.ledger_conn_id:
            key = TaskInstanceKey.from_context(context)
            ledger = SendLedger(self.ledger_conn_id, key, self.ledger_table)
        else:
            ledger = nullcontext(None)
            self.log.warning(
                "No ledger_conn_id: if this task is retried or cleared, numbers that were "
                "already sent will be sent again. Set ledger_conn_id to make retries safe."
            )
        report = None
        try:
            with ledger as open_ledger:  # an unreachable ledger fails here, before any SMS
                report = run_campaign(
                    valid,
                    self.hook,
                    settings,
                    ledger=open_ledger,
                    previous=open_ledger.previous if open_ledger else None,
                    logger=self.log,
                )
        except LedgerError as err:
            if report is None:
                raise
            report.stopped_by = report.stopped_by or err  # reported after the outputs
        return report

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
        considered = summary["recipients"] - summary["duplicates"]
        refused = summary["failed"] + summary["not_sent"] + summary["invalid"]
        ratio = refused / considered if considered else 0.0
        if ratio > self.fail_on_failed_ratio:
            raise AirflowFailException(
                f"{ratio:.1%} of recipients failed, were not sent or were invalid, above "
                f"fail_on_failed_ratio={self.fail_on_failed_ratio:.1%}. Result: {summary}"
            )
