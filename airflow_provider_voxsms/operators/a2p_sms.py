"""A2PSendSmsOperator: one SMS campaign to the recipients an upstream task produced."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_voxsms.errors import RESUMABLE_CODES, VoximplantApiError, VoximplantError
from airflow_provider_voxsms.hooks.voximplant import MAX_NUMBERS_PER_REQUEST, VoximplantHook
from airflow_provider_voxsms.ledger import LedgerError, SendLedger, TaskInstanceKey
from airflow_provider_voxsms.sms import report as run_report
from airflow_provider_voxsms.sms.dispatch import DispatchReport, dispatch
from airflow_provider_voxsms.sms.plan import SendPlan, plan_batches
from airflow_provider_voxsms.sms.recipients import RecipientsError, prepare_recipients
from airflow_provider_voxsms.sms.resume import resume


class VoximplantStoppedError(VoximplantError):
    """A run stopped on an error that a retry can get past (e.g. after a top-up)."""


class A2PSendSmsOperator(BaseOperator):
    """Send an A2P SMS to every valid recipient once, in batches of at most 100, concurrently.

    Recipients are normalised to international digits, invalid rows are reported and never sent,
    and duplicates (same number, same text) are sent once. Every recipient ends as accepted,
    failed, invalid, duplicate or unknown; the counts add up to the input rows.

    Returns a summary dict (``recipients``, ``valid``, ``invalid``, ``duplicates``, ``batches``,
    ``accepted``, ``failed``, ``not_sent``, ``unknown``, ``fragments``, ``duration_s``) and
    pushes the XComs ``failed_numbers`` (``destination_number``, ``error_code``,
    ``error_description``, ``stage``), ``accepted_numbers`` (``destination_number``,
    ``message_id``) and ``unknown_numbers`` (``destination_number``, ``reason``).

    :param src_number: the SenderID the SMS come from.
    :param recipients: a DataFrame, Series, list of numbers or list of dicts, or an XComArg of one.
    :param text: one message for everybody (templated). Give this or ``text_column``.
    :param text_column: column holding each row's own message; equal texts share requests.
    :param phone_column: column holding the numbers (DataFrame or list of dicts).
    :param default_region: ISO region (e.g. ``"GB"``) in which national numbers are parsed.
    :param voximplant_conn_id: connection of type ``voximplant``.
    :param batch_size: numbers per request, 1..100.
    :param max_concurrency: requests in flight at once (one hook, one token, one pool).
    :param requests_per_second: optional cap on request starts per second.
    :param store_body: ask Voximplant to store message texts.
    :param dry_run: prepare and plan only; log the cost and send nothing.
    :param max_recipients: refuse to start when more numbers than this would be sent.
    :param fail_on_failed_ratio: fail the task, after sending and pushing the outputs, when
        ``(failed + invalid) / (recipients - duplicates)`` exceeds this share (0..1).
    :param ledger_conn_id: SQL connection (SQLite, PostgreSQL, ...) for the send ledger that
        makes retries and cleared tasks of the same DAG run safe: they skip what earlier tries
        settled and never re-send a number that may have gone out. Strongly recommended.
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
        voximplant_conn_id: str = VoximplantHook.default_conn_name,
        batch_size: int = MAX_NUMBERS_PER_REQUEST,
        max_concurrency: int = 16,
        requests_per_second: float | None = None,
        store_body: bool = False,
        dry_run: bool = False,
        max_recipients: int | None = None,
        fail_on_failed_ratio: float | None = None,
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
        if not 1 <= batch_size <= MAX_NUMBERS_PER_REQUEST:
            raise ValueError(
                f"{self.task_id}: batch_size must be 1..{MAX_NUMBERS_PER_REQUEST} "
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
        self.src_number = src_number
        self.recipients = recipients
        self.text = text
        self.text_column = text_column
        self.phone_column = phone_column
        self.default_region = default_region
        self.voximplant_conn_id = voximplant_conn_id
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self.store_body = store_body
        self.dry_run = dry_run
        self.max_recipients = max_recipients
        self.fail_on_failed_ratio = fail_on_failed_ratio
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def execute(self, context) -> dict:
        started = time.monotonic()
        prepared = prepare_recipients(
            self.recipients,
            phone_column=self.phone_column,
            text=self.text,
            text_column=self.text_column,
            default_region=self.default_region,
        )
        plan = plan_batches(prepared.valid, self.batch_size)
        self.log.info(
            "Plan: %d rows -> %d to send (%d invalid, %d duplicates) in %d requests; %s",
            prepared.total,
            len(prepared.valid),
            len(prepared.invalid),
            prepared.duplicates,
            len(plan.batches),
            plan.summary(),
        )
        if self.max_recipients is not None and len(prepared.valid) > self.max_recipients:
            raise RecipientsError(
                f"{len(prepared.valid)} numbers would be sent, more than max_recipients="
                f"{self.max_recipients}. Raise max_recipients or split the list; nothing was sent."
            )
        if not str(self.src_number or "").strip():
            raise ValueError("src_number (the SenderID) is empty; nothing was sent.")
        _check_dataframe_xcoms()

        report = None
        if not self.dry_run and plan.batches:
            plan, report = self._send(prepared.valid, plan, context)

        summary = run_report.summarise(prepared, plan, report, time.monotonic() - started)
        ti = context["ti"]
        ti.xcom_push(key="failed_numbers", value=run_report.failed_numbers(prepared, report))
        ti.xcom_push(key="accepted_numbers", value=run_report.accepted_numbers(report))
        ti.xcom_push(key="unknown_numbers", value=run_report.unknown_numbers(report))
        self.log.info("Result: %s", summary)

        if report is not None and report.stopped_by is not None:
            self._fail_after_stop(report.stopped_by, summary)
        self._check_failed_ratio(summary)
        return summary

    def _send(self, valid, plan: SendPlan, context) -> tuple[SendPlan, DispatchReport]:
        """Send the plan, through the send ledger when there is one; returns what was sent."""
        hook = VoximplantHook(self.voximplant_conn_id, pool_size=self.max_concurrency)
        hook.check_config()
        ledger, earlier = None, []
        if self.ledger_conn_id:
            key = TaskInstanceKey.from_context(context)
            ledger = SendLedger(self.ledger_conn_id, key, self.ledger_table)
            previous = ledger.open()  # an unreachable ledger fails here, before any SMS
        else:
            self.log.warning(
                "No ledger_conn_id: if this task is retried or cleared, numbers that were "
                "already sent will be sent again. Set ledger_conn_id to make retries safe."
            )
        try:
            if ledger:
                resumed = resume(
                    valid, previous, ledger=ledger, hook=hook, src_number=self.src_number
                )
                earlier = resumed.outcomes
                if earlier:
                    plan = plan_batches(resumed.to_send, self.batch_size)
                    self.log.info(
                        "Resuming: %d number(s) were settled by earlier tries; %d left to send "
                        "in %d requests",
                        sum(len(o.batch.numbers) for o in earlier),
                        plan.recipients,
                        len(plan.batches),
                    )
            report = dispatch(
                plan.batches,
                lambda batch: hook.a2p_send_sms(
                    self.src_number, list(batch.numbers), batch.text, self.store_body
                ),
                total_numbers=plan.recipients,
                max_concurrency=self.max_concurrency,
                requests_per_second=self.requests_per_second,
                claim=ledger.claim if ledger else None,
                on_outcome=ledger.record if ledger else None,
                logger=self.log,
            )
        except BaseException:
            if ledger:
                with suppress(LedgerError):  # the original error matters more
                    ledger.close()
            raise
        if ledger:
            try:
                ledger.close()
            except LedgerError as err:  # report it after the outputs are pushed
                report.stopped_by = report.stopped_by or err
        report.outcomes[:0] = earlier
        return plan, report

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
            raise VoximplantStoppedError(message + " A retry resumes from the send ledger.")
        # Without a ledger a retry would re-send what was accepted; other stops need a fix first.
        raise AirflowFailException(message)

    def _check_failed_ratio(self, summary: dict) -> None:
        if self.fail_on_failed_ratio is None:
            return
        considered = summary["recipients"] - summary["duplicates"]
        ratio = (summary["failed"] + summary["invalid"]) / considered if considered else 0.0
        if ratio > self.fail_on_failed_ratio:
            raise AirflowFailException(
                f"{ratio:.1%} of recipients failed or were invalid, above "
                f"fail_on_failed_ratio={self.fail_on_failed_ratio:.1%}. Result: {summary}"
            )


def _check_dataframe_xcoms() -> None:
    """Fail before sending if Airflow cannot store the DataFrames this operator pushes as XComs.

    Airflow 3.2's serialiser predates pandas 3, which renamed DataFrame's module; there the
    task would send every SMS and then fail on its outputs, and a retry would send them again.
    A custom XCom backend that serialises values itself is trusted to cope.
    """
    import pandas as pd
    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time.xcom import resolve_xcom_backend
    from airflow.sdk.serde import serialize

    if resolve_xcom_backend().serialize_value is not BaseXCom.serialize_value:
        return
    try:
        serialize(pd.DataFrame({"destination_number": ["0"]}))
    except TypeError as err:
        raise AirflowFailException(
            f"This Airflow cannot store pandas {pd.__version__} DataFrames as XComs ({err}), and "
            "A2PSendSmsOperator pushes its outputs as DataFrames. Install pandas<3 or upgrade "
            "to Airflow 3.3 or later. Nothing was sent."
        ) from None
