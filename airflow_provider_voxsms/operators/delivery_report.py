"""A2PSmsDeliveryReportOperator: follow accepted messages to their final delivery status."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, XComNotFound

from airflow_provider_voxsms import lineage
from airflow_provider_voxsms.errors import VoximplantError
from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook
from airflow_provider_voxsms.operators.connections import check_connections
from airflow_provider_voxsms.sms import delivery
from airflow_provider_voxsms.sms.delivery_rows import Followed, StatusRows, failed_numbers
from airflow_provider_voxsms.sms.follow import (
    DeliveryFollower,
    FollowSettings,
    OpenIds,
    stops_following,
)
from airflow_provider_voxsms.sms.numbers.mask import check_log_numbers
from airflow_provider_voxsms.storage.delivery_status import DeliveryStatusTable
from airflow_provider_voxsms.storage.key import TASK_COLUMNS
from airflow_provider_voxsms.storage.results import is_location, outcome_blocks
from airflow_provider_voxsms.triggers.delivery import A2PSmsDeliveryTrigger

# Most messages are final within minutes; what is still open after hours is mostly phones that
# are off, which carriers retry for a day or more before EXPIRED. Six hours covers an evening
# campaign's overnight tail without holding a worker slot or a trigger for days.
DEFAULT_TIMEOUT_S = 6 * 3600.0
DEFAULT_POLL_INTERVAL_S = 60.0
# Rounds that finalise nothing double the wait up to this; 15 minutes keeps the tail cheap
# (a 1M-message campaign costs ~1,000 calls per round) and the report at most that late.
DEFAULT_MAX_POLL_INTERVAL_S = 900.0
# Before deferring, the task pushes the ids it follows here (``delivery.encode_ids`` text, a few
# kilobytes for a million); the trigger reads them, so its own state stays a few hundred bytes.
FOLLOWED_IDS_KEY = "followed_message_ids"
STATUS_TABLE_KEY = "delivery_status_table"  # where the table's rows are, when XCom has them too


class A2PSmsDeliveryReportOperator(BaseOperator):
    """Follow messages a send accepted until each has a final delivery status or time runs out.

    Polls ``A2PGetSmsHistory`` for the messages not final yet, 1,000 per call. Final statuses
    are DELIVERED, FAILED, EXPIRED, REJECTED, ABORTED and UNKNOWN; messages still QUEUED or
    DISPATCHED (or not in the history yet) at the timeout are ``pending``. Per message it keeps
    only the id and the number (read from a results table a block at a time), and writes each
    message's row to ``report_table`` as it is done with it, so memory stays flat in the
    campaign's size. A ``messages`` XCom the send never pushed (it failed before saying what
    it accepted, or never ran) skips the task; with ``trigger_rule="all_done"`` the report
    follows what a send that failed part-way did accept.

    Returns ``messages``, ``delivered``, ``failed``, ``expired``, ``rejected``, ``aborted``,
    ``unknown``, ``pending``, ``fragments``, ``cost``, ``duration_s``, and pushes the XComs
    ``delivery_status`` (one row per message: ``message_id``, ``destination_number``,
    ``delivery_status``, ``error_message``, ``fragments``, ``cost``, ``processing_date``) and
    ``failed_numbers`` (the send task's columns, stage ``delivery``, one row per message whose
    final status is not DELIVERED). When the messages come from a send's results table and
    ``report_conn_id`` is set, those two XComs only say where the rows are instead
    (``conn_id``, ``table``, the task key, ``rows``; ``failed_numbers`` adds
    ``not_status: "DELIVERED"``), so a large campaign keeps its rows out of XCom end to end.
    When the rows are both in XCom and in ``report_table``, ``delivery_status_table`` says where
    the table's are (the campaign page reads them there).
    A deferring task also pushes ``followed_message_ids``, the ids it follows in compact text,
    which the trigger reads instead of carrying them.

    :param messages: a DataFrame with ``message_id`` (and ``destination_number``), a list of
        them (mapped sends) or of message ids, or an XComArg of one, e.g.
        ``XComArg(send, key="accepted_numbers")``; or, for a send with ``results_conn_id``, its
        summary (``send.output``: a mapped delivery can ``.expand(messages=send.output)``) or
        that ``accepted_numbers`` XCom, which say where the accepted rows are: they are read
        from the results table. (templated)
    :param send_task_id: instead of ``messages``: pull that task's ``accepted_numbers`` XCom
        (every map index of a mapped task). (templated)
    :param src_number: the SenderID the messages came from; narrows the queries. (templated)
    :param voximplant_conn_id: connection of type ``voximplant``.
    :param timeout: how long to wait for final statuses, seconds or a timedelta (6 hours by
        default: see ``DEFAULT_TIMEOUT_S``), counted from the task's start.
    :param poll_interval: seconds between rounds while rounds finalise messages; each round in
        a row that finalises none doubles the wait, up to ``max_poll_interval``.
    :param max_poll_interval: the longest wait between rounds.
    :param deferrable: wait in the triggerer instead of a worker slot (the default follows the
        ``[operators] default_deferrable`` setting).
    :param report_conn_id: common-sql connection for the ``report_table``; None: no table.
    :param report_table: table of statuses, one row per message, written as the report goes;
        a try first deletes the rows an earlier try of the task instance wrote.
    :param fail_on_undelivered_ratio: fail the task, after pushing the outputs, when the share
        of messages not DELIVERED (final failures and pending) exceeds this (0..1).
    :param max_concurrency: history calls in flight at once within a round (4: a round over
        a million open messages is 1,000 calls, about 4 x faster than one at a time, while a
        few connections stay far from the API's documented 200 concurrent requests).
    :param hook_params: keyword arguments for :class:`VoximplantAsyncHook` (back-off, timeouts).
    :param log_numbers: how log lines and errors would show a recipient's number: ``"masked"``
        (default: ``+44 ******** 12``) or ``"full"``, as on the send. Nothing this operator logs
        names a number today (only counts); its outputs keep full numbers.
    """

    template_fields: Sequence[str] = ("messages", "send_task_id", "src_number")
    ui_color = "#d6f5e0"

    def __init__(
        self,
        *,
        messages: Any = None,
        send_task_id: str | None = None,
        src_number: str | None = None,
        voximplant_conn_id: str = VoximplantAsyncHook.default_conn_name,
        timeout: float | timedelta = DEFAULT_TIMEOUT_S,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL_S,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        report_conn_id: str | None = None,
        report_table: str = "sms_delivery_status",
        fail_on_undelivered_ratio: float | None = None,
        max_concurrency: int = 4,
        hook_params: dict[str, Any] | None = None,
        log_numbers: str = "masked",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (messages is None) == (send_task_id is None):
            raise ValueError(
                f"{self.task_id}: give exactly one of messages= (what to follow) or "
                "send_task_id= (the send task whose accepted_numbers to follow)."
            )
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        if seconds < 0 or poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError(
                f"{self.task_id}: want timeout >= 0 and 0 < poll_interval <= max_poll_interval, "
                f"got {seconds}, {poll_interval} and {max_poll_interval}."
            )
        if max_concurrency < 1:
            raise ValueError(
                f"{self.task_id}: max_concurrency must be >= 1, got {max_concurrency}."
            )
        if fail_on_undelivered_ratio is not None and not 0 <= fail_on_undelivered_ratio <= 1:
            raise ValueError(
                f"{self.task_id}: fail_on_undelivered_ratio is a share in 0..1, "
                f"got {fail_on_undelivered_ratio}."
            )
        try:
            self.log_numbers = check_log_numbers(log_numbers)
        except ValueError as err:
            raise ValueError(f"{self.task_id}: {err}.") from None
        self.messages = messages
        self.send_task_id = send_task_id
        self.src_number = src_number
        self.voximplant_conn_id = voximplant_conn_id
        self.timeout_s = seconds
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.deferrable = deferrable
        self.report_conn_id = report_conn_id
        self.report_table = report_table
        self._messages_from_results = False
        self._results: list[dict] = []  # the results locations followed, when any
        self.fail_on_undelivered_ratio = fail_on_undelivered_ratio
        self.max_concurrency = max_concurrency
        self.hook_params = hook_params or {}

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Render as any operator does; a ``messages`` XCom the send never pushed (it failed
        before saying what it accepted, or never ran) skips the task: there is nothing to
        follow, and the send's own state already says what went wrong."""
        try:
            super().render_template_fields(context, jinja_env)
        except XComNotFound as err:
            raise AirflowSkipException(f"Nothing to follow: {err}") from err

    def execute(self, context) -> dict:
        check_connections(
            voximplant_conn_id=self.voximplant_conn_id, report_conn_id=self.report_conn_id
        )
        started = time.time()
        followed = self._followed(context)
        self.log.info("Following %d message(s) to their final delivery status", len(followed))
        if self.deferrable and len(followed):
            ti = context["ti"]
            ti.xcom_push(key=FOLLOWED_IDS_KEY, value=delivery.encode_ids(followed.ids))
            trigger = A2PSmsDeliveryTrigger(
                ids_xcom={
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "map_index": getattr(ti, "map_index", -1),
                    "key": FOLLOWED_IDS_KEY,
                },
                voximplant_conn_id=self.voximplant_conn_id,
                src_number=self.src_number or None,
                deadline=started + self.timeout_s,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                started=started,
                hook_params=self.hook_params,
                max_concurrency=self.max_concurrency,
            )
            self.defer(trigger=trigger, method_name="execute_complete")
        return self._report(context, followed, started, started + self.timeout_s)

    def execute_complete(self, context, event: dict | None = None) -> dict:
        """Resumed after the trigger: one round collects every message's row, then outputs."""
        event = event or {}
        if event.get("status") == "error":
            raise AirflowFailException(f"Following delivery failed: {event.get('message')}")
        self.log.info(
            "Trigger ended (%s) after %s round(s) and %s call(s); %s message(s) still open",
            event.get("status"),
            event.get("rounds"),
            event.get("calls"),
            event.get("open"),
        )
        started = float(event.get("started") or 0)
        return self._report(context, self._followed(context), started, deadline=0.0)

    def get_openlineage_facets_on_complete(self, task_instance):
        """OpenLineage: the results tables read, the status table written, the counts
        returned (:mod:`airflow_provider_voxsms.lineage`)."""
        return lineage.report_lineage(self)

    def get_openlineage_facets_on_failure(self, task_instance):
        """As on completion; the counts when the task failed after it had them."""
        return lineage.report_lineage(self)

    # -- the pieces ------------------------------------------------------------------------

    def _followed(self, context) -> Followed:
        """What to follow: the accepted rows of a send's results table (read a block at a
        time), or the messages given in XCom."""
        messages = self.messages
        if self.send_task_id is not None:
            messages = context["ti"].xcom_pull(task_ids=self.send_task_id, key="accepted_numbers")
        self._messages_from_results = _has_location(messages)
        self._results = _results_locations(messages) if self._messages_from_results else []
        # For OpenLineage: the results tables read (here, where the XCom is at hand).
        self._results_read = lineage.results_read(messages) if self._messages_from_results else ()
        try:
            if self._messages_from_results:
                return Followed.from_blocks(_accepted_blocks(self._results))
            return Followed.from_messages(messages)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(f"{self.task_id}: {err}") from err

    def _report(self, context, followed: Followed, started: float, deadline: float) -> dict:
        """Follow in this worker until every message is final or ``deadline`` (a past one: one
        round, which collects the rows after the trigger), writing each message's row as the
        follower is done with it; then the outputs."""
        ti = context["ti"]
        key = dict(
            zip(TASK_COLUMNS, (ti.dag_id, ti.run_id, ti.task_id, _map_index(ti)), strict=True)
        )
        in_table = bool(self.report_conn_id)
        # A send that kept its rows out of XCom: so does its report (the rows are in the table;
        # the XComs say where, and how many).
        rows_in_xcom = not (in_table and self._messages_from_results)
        # Results on the report's connection: the table stores delivered per variant too.
        joinable = [r for r in self._results if r.get("conn_id") == self.report_conn_id]
        table = (
            DeliveryStatusTable(self.report_conn_id, key, self.report_table, results=joinable)
            if in_table
            else nullcontext()
        )
        with table as writer:
            rows = StatusRows(followed, write=writer.write if in_table else None, keep=rows_in_xcom)
            follower = self._follow(followed.ids, deadline, on_done=rows.add)
            rows.add_unseen(follower.open.open_ids())
            rows.close()
        summary = rows.summary(time.time() - started if started else 0.0)
        self._summary = summary  # for OpenLineage's run facet, also when the check below fails
        where = {"conn_id": self.report_conn_id, "table": self.report_table, **key}
        if rows_in_xcom:
            statuses = rows.frame()
            ti.xcom_push(key="delivery_status", value=statuses)
            ti.xcom_push(key="failed_numbers", value=failed_numbers(statuses))
            if in_table:  # the table has them too, with times: say where (the campaign page)
                ti.xcom_push(key=STATUS_TABLE_KEY, value={**where, "rows": rows.rows})
        else:
            ti.xcom_push(key="delivery_status", value={**where, "rows": rows.rows})
            undelivered = {**where, "not_status": "DELIVERED", "rows": rows.undelivered}
            ti.xcom_push(key="failed_numbers", value=undelivered)
        self.log.info("Delivery report: %s", summary)
        if self.fail_on_undelivered_ratio is not None:
            ratio = delivery.undelivered_ratio(summary)
            if ratio > self.fail_on_undelivered_ratio:
                raise AirflowFailException(
                    f"{ratio:.1%} of messages were not delivered (failed or still pending), "
                    f"above fail_on_undelivered_ratio={self.fail_on_undelivered_ratio:.1%}. "
                    f"Result: {summary}"
                )
        return summary

    def _follow(self, ids, deadline: float, on_done) -> DeliveryFollower:
        """Follow ``ids`` in this worker with the trigger's code, run by ``asyncio.run``, until
        each is final or ``deadline`` passes. Errors every round would meet (configuration,
        credentials, stopping API codes) fail the task at once."""
        settings = FollowSettings(
            src_number=self.src_number or None,
            deadline=deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            max_concurrency=self.max_concurrency,
        )
        params = {"pool_size": max(1, self.max_concurrency), **self.hook_params}

        async def follow() -> DeliveryFollower:
            follower = DeliveryFollower(None, OpenIds(ids), settings, on_done=on_done, log=self.log)
            if follower.open.done:
                return follower
            async with VoximplantAsyncHook(self.voximplant_conn_id, **params) as hook:
                follower.api = hook
                await follower.run()
                return follower

        try:
            return asyncio.run(follow())
        except VoximplantError as err:
            if stops_following(err):
                raise AirflowFailException(str(err)) from err
            raise


def _map_index(ti) -> int:
    return getattr(ti, "map_index", -1)


def _results_locations(messages: Any) -> list[dict]:
    """Every results location in ``messages`` (a send's summary or ``accepted_numbers`` XCom,
    or a list of them): where each send's rows are."""
    found = [messages] if is_location(messages) else [m for m in messages if is_location(m)]
    return [dict(location.get("results", location)) for location in found]


def _accepted_blocks(locations: list[dict]):
    """The accepted rows (message id, number) of the results ``locations``, a block at a
    time."""
    return itertools.chain.from_iterable(
        outcome_blocks({**location, "outcomes": ["accepted"]}, ["message_id", "destination_number"])
        for location in locations
    )


def _has_location(messages: Any) -> bool:
    """True for a results location, or a list holding one."""
    if is_location(messages):
        return True
    listed = isinstance(messages, Sequence) and not isinstance(messages, str | bytes)
    return listed and any(is_location(item) for item in messages)
