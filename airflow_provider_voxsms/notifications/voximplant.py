"""VoximplantSmsNotifier: an SMS to on-call numbers from ``on_failure_callback`` and friends,
or from a deadline alert (awaited in the triggerer)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence

from airflow.sdk import BaseNotifier

from airflow_provider_voxsms.hooks.voximplant import VoximplantAsyncHook, VoximplantHook
from airflow_provider_voxsms.sms.model import A2PSendSmsResponse, Batch
from airflow_provider_voxsms.sms.numbers.mask import check_log_numbers, shown_number
from airflow_provider_voxsms.sms.plan import plan_batches
from airflow_provider_voxsms.sms.recipients import prepare_recipients

DEFAULT_TEXT = "Airflow: {{ ti.dag_id }}.{{ ti.task_id }} is {{ ti.state }} (run {{ run_id }})"
# A deadline alert's context has no task instance: the DAG run (as the REST API shows it) and
# the deadline.
DEADLINE_TEXT = (
    "Airflow: {{ dag_run.dag_id }} run {{ dag_run.dag_run_id }} missed its deadline "
    "({{ deadline.deadline_time }})"
)
_SEPARATORS = re.compile(r"[,;]")


class VoximplantSmsNotifier(BaseNotifier):
    """Send a templated SMS to a few numbers, e.g. ``on_failure_callback=VoximplantSmsNotifier(...)``.

    Numbers are normalised like the operator's recipients; invalid ones are logged and skipped.
    A number the API refuses is logged, not raised: an alert must not fail a callback chain.

    It is also awaitable (``async_notify``, over :class:`VoximplantAsyncHook`), so it works as a
    deadline alert's callback, run in the triggerer::

        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(hours=1),
            callback=AsyncCallback(
                VoximplantSmsNotifier, kwargs={"src_number": "VoxDemo", "numbers": ["+44..."]}
            ),
        )

    :param src_number: the SenderID the alert comes from.
    :param numbers: on-call numbers (templated): a list, or a string holding one number or
        several separated by commas or semicolons, e.g. ``"{{ params.on_call }}"``. A string is
        split after rendering, so a templated list of numbers arrives as several numbers.
    :param text: the message, a Jinja template rendered with the callback's context; default
        ``DEFAULT_TEXT`` (task callbacks) or, in a deadline alert, ``DEADLINE_TEXT``.
    :param default_region: ISO region in which national numbers are parsed.
    :param voximplant_conn_id: connection of type ``voximplant``.
    :param log_numbers: how log lines show the numbers: ``"masked"`` (default:
        ``+44 ******** 12``) or ``"full"``.
    :param context: the context to render with when awaited (a deadline alert passes it).
    """

    template_fields: Sequence[str] = ("src_number", "numbers", "text")

    def __init__(
        self,
        *,
        src_number: str,
        numbers: str | Sequence[str],
        text: str | None = None,
        default_region: str | None = None,
        voximplant_conn_id: str = VoximplantHook.default_conn_name,
        log_numbers: str = "masked",
        context=None,
    ):
        super().__init__(context)
        self.src_number = src_number
        # A string is still a template here: split it only once rendered (in notify).
        self.numbers = numbers if isinstance(numbers, str) else list(numbers)
        self.text = text
        self.default_region = default_region
        self.voximplant_conn_id = voximplant_conn_id
        self.log_numbers = check_log_numbers(log_numbers)

    def render_template_fields(self, context, jinja_env=None) -> None:
        if self.text is None:  # the default text for what called: a task or a deadline
            self.text = DEADLINE_TEXT if "deadline" in context else DEFAULT_TEXT
        super().render_template_fields(context, jinja_env)

    def notify(self, context) -> None:
        hook = VoximplantHook(self.voximplant_conn_id)
        for batch in self._batches():
            self._log_answer(hook.a2p_send_sms(self.src_number, list(batch.numbers), batch.text))

    async def async_notify(self, context) -> None:
        """:meth:`notify`, awaited: numbers are parsed in a thread, as the triggerer's event
        loop serves every deferred task of the deployment."""
        batches = await asyncio.to_thread(self._batches)
        async with VoximplantAsyncHook(self.voximplant_conn_id) as hook:
            for batch in batches:
                answer = await hook.a2p_send_sms(self.src_number, list(batch.numbers), batch.text)
                self._log_answer(answer)

    def _batches(self) -> list[Batch]:
        """The rendered numbers, normalised (invalid ones logged), in requests."""
        prepared = prepare_recipients(
            split_numbers(self.numbers), text=self.text, default_region=self.default_region
        )
        for row in prepared.invalid.itertuples():
            shown = shown_number(row.original, self.log_numbers)
            self.log.warning("Alert not sent to %r: %s", shown, row.reason)
        return plan_batches(prepared.valid).batches

    def _log_answer(self, answer: A2PSendSmsResponse) -> None:
        for failed in answer.failed:
            self.log.warning(
                "Alert to %s failed: error %s: %s",
                shown_number(failed.get("destination_number"), self.log_numbers, e164=True),
                failed.get("error_code"),
                failed.get("error_description"),
            )
        self.log.info("Alert sent to %d number(s)", len(answer.result))


def split_numbers(numbers) -> list:
    """The rendered ``numbers`` as a list: strings split at commas and semicolons.

    A list rendered into a plain string (``"['447...', '447...']"``, Jinja's default output)
    is split too, its brackets and quotes dropped. Non-string items (ints) are kept as they are.
    """
    if isinstance(numbers, str) or not isinstance(numbers, Iterable):
        numbers = [numbers]  # one string, or one int from a native-object template
    out: list = []
    for item in numbers:
        if not isinstance(item, str):
            out.append(item)
            continue
        for part in _SEPARATORS.split(item.strip().removeprefix("[").removesuffix("]")):
            part = part.strip().strip("'\"").strip()
            if part:
                out.append(part)
    return out
