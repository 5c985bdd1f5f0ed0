"""A2PSmsDeliveryTrigger: wait in the triggerer until followed messages are final.

The trigger's serialised state is small and does not grow with the campaign: it names the
XCom that holds the message ids (``delivery.encode_ids`` text the operator pushes before it
defers: sorted, delta-encoded, zlib-compressed) instead of carrying them, and its deadline is
absolute, so a trigger restarted on another triggerer keeps the task's timeout. It reads the
ids once, through the Task SDK's XCom API (the triggerer serves it), keeps them as one sorted
int64 array and a mask of the open ones (9 MB per million) and fires one small event (counts,
not rows); the resumed task collects the rows in one round. A restarted trigger starts again from every id: its first round re-reads what was
already final, which costs one round of calls and changes nothing (the history is only read).

The polling is ``sms.follow.DeliveryFollower`` over ``VoximplantAsyncHook``, the code a worker
runs when the task does not defer. Nothing blocks the triggerer's event loop: the triggerer
imports this module on its loop, so it imports nothing heavy (the follower, numpy, the hook,
httpx and cryptography are imported in a thread when the trigger starts: about a second on a
busy machine); the XCom is read and the ids decoded in a thread, the hook loads its
connection, key and TLS context in one, and answers are parsed and applied in threads.

Garbage collection: the first of these triggers in a process moves the objects that exist then
(the triggerer's modules and state, about 300,000 objects) out of the collector's way
(``gc.freeze()``). The calls of a round allocate fast, and every so often Python collects the
whole heap, holding the loop meanwhile: 0.2 s for a triggerer's heap on an idle machine, over
a second on a busy one (seen in the cluster test). Frozen objects are still freed when
nothing refers to them; only reference cycles among them are never collected, a one-time
cost bounded by the heap of that moment. It freezes once before importing the trigger's
modules, which allocate enough to set off a full collection (the imports run in a thread, but
a collection holds the GIL, and so the loop: 0.21 s once in the cluster test, on a loaded
machine), and once after.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_voxsms.sms.follow import DeliveryFollower, FollowSettings, OpenIds

DEFAULT_CONN_ID = "voximplant_default"  # VoximplantAsyncHook.default_conn_name


_frozen = False  # gc.freeze() done in this process (see the module's docstring)


def _load() -> SimpleNamespace:
    """The modules the trigger runs on (imported in a thread, off the loop); the first time in
    a process, the heap is frozen for the garbage collector."""
    global _frozen
    if not _frozen:  # first what exists, so that a collection the imports set off skips it
        gc.freeze()
    compat = importlib.import_module("airflow_provider_voxsms.compat")
    errors = importlib.import_module("airflow_provider_voxsms.errors")
    hooks = importlib.import_module("airflow_provider_voxsms.hooks.voximplant")
    follow = importlib.import_module("airflow_provider_voxsms.sms.follow")
    if not _frozen:  # then the modules just imported
        gc.freeze()
        _frozen = True
    return SimpleNamespace(
        read_xcom=compat.read_xcom,
        VoximplantError=errors.VoximplantError,
        VoximplantAsyncHook=hooks.VoximplantAsyncHook,
        DeliveryFollower=follow.DeliveryFollower,
        FollowSettings=follow.FollowSettings,
        OpenIds=follow.OpenIds,
    )


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
    :param hook_params: keyword arguments for :class:`VoximplantAsyncHook` (attempts,
        back-off, timeouts).
    :param max_concurrency: history calls in flight at once within a round.
    """

    def __init__(
        self,
        *,
        ids_xcom: dict[str, Any],
        voximplant_conn_id: str = DEFAULT_CONN_ID,
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
        parts = await asyncio.to_thread(_load)
        hook = parts.VoximplantAsyncHook(self.voximplant_conn_id, **self._hook_params())
        follower = parts.DeliveryFollower(hook, parts.OpenIds(), self._settings(parts))
        try:
            async with hook:
                ids = await self.load_ids(parts)
                follower = parts.DeliveryFollower(hook, ids, follower.settings, log=self.log)
                await hook.check_config()
                status = await follower.run()
        except (LookupError, parts.VoximplantError) as err:
            yield TriggerEvent(self._event("error", follower, message=str(err)))
            return
        yield TriggerEvent(self._event(status, follower))

    async def load_ids(self, parts: SimpleNamespace) -> OpenIds:
        """The followed ids, read from the XCom ``ids_xcom`` names (decoded in a thread)."""
        try:
            encoded = await parts.read_xcom(**self.ids_xcom)
        except Exception as err:  # the API server's answer, as the Task SDK raises it
            raise LookupError(f"Reading XCom {self.ids_xcom} failed: {err}") from None
        if not isinstance(encoded, str):
            raise LookupError(
                f"The message ids to follow are not in XCom {self.ids_xcom}; the task pushes "
                "them before it defers: clear the task to run it again."
            )
        return await asyncio.to_thread(parts.OpenIds.decode, encoded)

    def _hook_params(self) -> dict[str, Any]:
        return {"pool_size": max(1, self.max_concurrency), **self.hook_params}

    def _settings(self, parts: SimpleNamespace) -> FollowSettings:
        return parts.FollowSettings(
            src_number=self.src_number,
            deadline=self.deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            max_concurrency=self.max_concurrency,
        )

    def _event(self, status: str, follower: DeliveryFollower, **extra: Any) -> dict:
        return {"status": status, **follower.state(), "started": self.started, **extra}
