"""A2PSmsDeliveryTrigger: wait in the triggerer until followed messages are final.

The trigger's serialised state is small and does not grow with the campaign: it names the
XCom that holds the message ids (``delivery.encode_ids`` text the operator pushes before it
defers: sorted, delta-encoded, zlib-compressed) instead of carrying them, and its deadline is
absolute, so a trigger restarted on another triggerer keeps the task's timeout. It reads the
ids once, through the Task SDK's XCom API (the triggerer serves it), keeps only the open ones
in memory and fires one small event (counts, not rows); the resumed task collects the rows in
one round. A restarted trigger starts again from every id: its first round re-reads what was
already final, which costs one round of calls and changes nothing (the history is only read).

Requests reuse the hook's connection reading, service-account token, form encoding, answer
parsing and error types; only the transport is ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_voxsms.compat import read_xcom
from airflow_provider_voxsms.errors import (
    InputError,
    VoximplantApiError,
    VoximplantError,
    VoximplantHttpError,
    VoximplantTransportError,
    is_throttling,
)
from airflow_provider_voxsms.hooks.voximplant import (
    VoximplantHook,
    _encode_form,
    _form_value,
    _parse_answer,
)
from airflow_provider_voxsms.sms import delivery

METHOD = "A2PGetSmsHistory"


class A2PSmsDeliveryTrigger(BaseTrigger):
    """Poll ``A2PGetSmsHistory`` until every followed message is final or ``deadline`` passes.

    :param ids_xcom: where the message ids are: the XCom's ``dag_id``, ``run_id``, ``task_id``,
        ``map_index`` and ``key``; its value is ``delivery.encode_ids`` text.
    :param voximplant_conn_id: connection of type ``voximplant``.
    :param src_number: narrows the queries when given.
    :param deadline: epoch seconds at which to stop waiting.
    :param poll_interval: seconds between rounds that finalise messages (doubling while idle).
    :param max_poll_interval: the longest wait between rounds.
    :param started: epoch seconds the task started (passed back for its duration).
    :param hook_params: keyword arguments for :class:`VoximplantHook` (attempts, back-off).
    :param max_concurrency: history calls in flight at once within a round.
    """

    def __init__(
        self,
        *,
        ids_xcom: dict[str, Any],
        voximplant_conn_id: str = VoximplantHook.default_conn_name,
        src_number: str | None = None,
        deadline: float,
        poll_interval: float = 60.0,
        max_poll_interval: float = 900.0,
        started: float | None = None,
        hook_params: dict[str, Any] | None = None,
        max_concurrency: int = 4,
    ):
        super().__init__()
        self.ids_xcom = dict(ids_xcom)
        self.voximplant_conn_id = voximplant_conn_id
        self.src_number = src_number
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.started = started
        self.hook_params = hook_params or {}
        self.max_concurrency = int(max_concurrency)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ids_xcom": self.ids_xcom,
                "voximplant_conn_id": self.voximplant_conn_id,
                "src_number": self.src_number,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "started": self.started,
                "hook_params": self.hook_params,
                "max_concurrency": self.max_concurrency,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        tracker = delivery.DeliveryTracker([], keep_rows=False)
        try:
            tracker = delivery.DeliveryTracker(await self.load_ids(), keep_rows=False)
            client = await AsyncHistoryClient.connect(self.voximplant_conn_id, self.hook_params)
        except (LookupError, VoximplantError) as err:
            yield TriggerEvent(self._event("error", tracker, message=str(err)))
            return
        idle = 0
        async with client:
            while tracker.open:
                before = len(tracker.open)
                try:
                    await client.run_tracker_round(tracker, self.src_number, self.max_concurrency)
                except (InputError, VoximplantApiError) as err:
                    if isinstance(err, InputError) or err.is_fatal:
                        yield TriggerEvent(self._event("error", tracker, message=str(err)))
                        return
                    self.log.warning("Delivery poll round failed, next round retries: %s", err)
                except VoximplantError as err:  # retried to the hook's limit: next round
                    self.log.warning("Delivery poll round failed, next round retries: %s", err)
                idle = 0 if len(tracker.open) < before else idle + 1
                remaining = self.deadline - time.time()
                self.log.info(
                    "Round %d: %d final, %d open (%d call(s) so far)",
                    tracker.rounds,
                    tracker.total - len(tracker.open),
                    len(tracker.open),
                    tracker.calls,
                )
                if not tracker.open or remaining <= 0:
                    break
                await asyncio.sleep(
                    delivery.next_delay(
                        self.poll_interval, idle - 1, remaining, self.max_poll_interval
                    )
                )
        yield TriggerEvent(self._event("done" if tracker.done else "timeout", tracker))

    async def load_ids(self) -> list[int]:
        """The followed ids, read from the XCom ``ids_xcom`` names."""
        try:
            encoded = await read_xcom(**self.ids_xcom)
        except Exception as err:  # the API server's answer, as the Task SDK raises it
            raise LookupError(f"Reading XCom {self.ids_xcom} failed: {err}") from None
        if not isinstance(encoded, str):
            raise LookupError(
                f"The message ids to follow are not in XCom {self.ids_xcom}; the task pushes "
                "them before it defers: clear the task to run it again."
            )
        return delivery.decode_ids(encoded)

    def _event(self, status: str, tracker: delivery.DeliveryTracker, **extra: Any) -> dict:
        return {
            "status": status,
            "messages": tracker.total,
            "open": len(tracker.open),
            "counts": dict(tracker.counts),
            "rounds": tracker.rounds,
            "calls": tracker.calls,
            "started": self.started,
            **extra,
        }


class AsyncHistoryClient:
    """``A2PGetSmsHistory`` over ``httpx.AsyncClient`` with the hook's settings and retries.

    Like the hook for a read-only method: throttling answers, connection failures, network
    errors and HTTP 5xx are retried with capped exponential back-off and jitter (or the wait
    the API names), up to the hook's ``max_attempts``.
    """

    def __init__(self, hook: VoximplantHook):
        self.hook = hook
        connect, read = hook.timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(read, connect=connect), verify=_ssl_context(hook.verify)
        )

    @classmethod
    async def connect(
        cls, conn_id: str, hook_params: dict[str, Any] | None = None
    ) -> AsyncHistoryClient:
        hook = VoximplantHook(conn_id, **(hook_params or {}))
        # The connection is read without blocking the event loop, then cached where the hook
        # reads it (its ``_connection`` cached property), so every setting comes from the hook.
        hook.__dict__["_connection"] = await VoximplantHook.aget_connection(conn_id)
        hook.check_config()
        return cls(hook)

    async def __aenter__(self) -> AsyncHistoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def run_round(self, round_: Generator[dict[str, Any], dict, Any]) -> Any:
        """Drive a round (``delivery.poll_round``, ``DeliveryTracker.round``) with this client's
        answers; returns what the round returns."""
        try:
            params = next(round_)
            while True:
                params = round_.send(await self.call(**params))
        except StopIteration as done:
            return done.value

    async def run_tracker_round(
        self,
        tracker: delivery.DeliveryTracker,
        src_number: str | None = None,
        concurrency: int = 1,
    ) -> int:
        """One tracker round with up to ``concurrency`` calls in flight; each query's rows are
        applied as it completes. Returns the messages that became final; the first failing
        call's error is raised and the round's other calls are cancelled."""
        semaphore = asyncio.Semaphore(max(1, concurrency))
        finished = 0

        async def one(query: dict[str, Any]) -> None:
            nonlocal finished
            async with semaphore:
                pages, calls = delivery.query_pages(query), 0
                try:
                    params = next(pages)
                    while True:
                        calls += 1
                        params = pages.send(await self.call(**params))
                except StopIteration as done:
                    found = done.value
                finally:
                    tracker.calls += calls  # one event loop: no lock needed
            finished += tracker.apply(found)

        tasks = [asyncio.ensure_future(one(query)) for query in tracker.queries(src_number)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        tracker.rounds += 1
        return finished

    async def call(self, **params: Any) -> dict:
        hook = self.hook
        body = _encode_form({k: _form_value(v) for k, v in params.items() if v is not None})
        for attempt in range(1, hook.max_attempts + 1):
            try:
                return await self._post(body)
            except VoximplantError as err:
                retryable = (
                    is_throttling(err)
                    or isinstance(err, VoximplantTransportError)
                    or (isinstance(err, VoximplantHttpError) and err.status >= 500)
                )
                if not retryable or attempt == hook.max_attempts:
                    raise
                delay = _backoff(hook, attempt, getattr(err, "retry_after", None))
                hook.log.warning(
                    "Voximplant back-off: %s; attempt %d of %d, waiting %.1f s",
                    err,
                    attempt,
                    hook.max_attempts,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, body: str) -> dict:
        headers = {
            "Authorization": f"Bearer {self.hook.signer.token()}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        url = f"{self.hook.base_url}/{METHOD}"
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise VoximplantTransportError(
                METHOD,
                f"could not connect to {self.hook.base_url} ({type(err).__name__})",
                maybe_processed=False,
            ) from None
        except httpx.HTTPError as err:
            raise VoximplantTransportError(
                METHOD, f"no answer: {type(err).__name__}", maybe_processed=True
            ) from None
        return _parse_answer(METHOD, response)  # httpx.Response reads like requests'


def _backoff(hook: VoximplantHook, attempt: int, hinted: float | None) -> float:
    if hinted is None:
        ceiling = min(hook.backoff_max_s, hook.backoff_initial_s * 2 ** (attempt - 1))
        hinted = random.uniform(ceiling / 2, ceiling)
    return min(float(hinted), hook.backoff_max_s)


def _ssl_context(verify: str | bool) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify
