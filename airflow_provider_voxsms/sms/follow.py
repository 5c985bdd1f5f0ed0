"""Following accepted messages to their final delivery status: the one poll loop.

The trigger awaits :meth:`DeliveryFollower.run` on the triggerer's event loop; a worker
(``deferrable=False``) runs the same code with ``asyncio.run``. Each round asks the history
(``sms.history``) about the messages not final yet, 1,000 ids per call, with at most
``max_concurrency`` calls in flight, and applies each answer as it comes, so a failed call keeps
what the round learnt before it. Between rounds the wait doubles while rounds finalise nothing
(:func:`next_delay`). A round that fails is retried by the next one (the hook has already
retried each call); an error that would fail every round the same way stops following
(:func:`stops_following`). The round that starts at or after the deadline is the last: what it
finds still pending is done with too, as pending.

The follower keeps no row. ``on_done``, when given, is handed the history rows of the messages
it is done with, an answer at a time (the worker's report writes them as they come, so a
million messages are never a million objects); without it only counts are kept (the trigger).

Nothing here may hold the event loop for long, because the triggerer's loop is shared by every
deferred task of the deployment: the open ids are one sorted int64 array and a mask
(:class:`OpenIds`), a round gathers the open ones once and slices them into queries (no sort,
no set of a million Python ints), every call is awaited, and each answer (at most 1,000 rows)
is applied in a few milliseconds, in a thread (so answers that arrive together are not
applied back to back on the loop).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from airflow_provider_voxsms.errors import InputError, VoximplantApiError, VoximplantError
from airflow_provider_voxsms.sms import history
from airflow_provider_voxsms.sms.delivery import (
    FINAL_STATUSES,
    NO_ID,
    decode_id_array,
    message_id_of,
    row_status,
    sorted_ids,
)

log = logging.getLogger(__name__)

# Answers are applied in one thread for the process, one at a time (the open ids, counts and
# rows of a follower change only there): the answers of every follower on a loop arrive
# together, and applied back to back on the loop they held a busy triggerer's loop for tenths
# of a second.
_APPLYING = ThreadPoolExecutor(1, thread_name_prefix="voxsms-follow")


class AsyncSmsHistory(Protocol):
    """What following needs of the API (``VoximplantAsyncHook`` has it)."""

    async def a2p_get_sms_history(self, **filters: Any) -> dict: ...


class OpenIds:
    """Followed message ids as one sorted int64 array and a mask of those still open.

    A million ids take 9 MB (a set of Python ints about 60). Sorting happens once, here; a round
    reads the open ids with :meth:`open_ids` (a gather, already sorted) and :meth:`close` finds
    answered ids by binary search. Once half the ids are closed the array is compacted.
    """

    def __init__(self, ids: Iterable[int] | np.ndarray = ()):
        values = sorted_ids(ids)
        self._ids = values
        self._open = np.ones(len(values), dtype=bool)
        self.total = len(values)
        self._count = len(values)

    @classmethod
    def decode(cls, encoded: str) -> OpenIds:
        """From ``delivery.encode_ids`` text (blocking for large sets: run it in a thread)."""
        return cls(decode_id_array(encoded))

    def __len__(self) -> int:
        return self._count

    @property
    def done(self) -> bool:
        return self._count == 0

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._open.nbytes

    def open_ids(self) -> np.ndarray:
        """The open ids, sorted (a view while none is closed)."""
        if self._count == len(self._ids):
            return self._ids
        if self._count * 2 <= len(self._ids):  # compact: later rounds gather less
            self._ids = self._ids[self._open]
            self._open = np.ones(len(self._ids), dtype=bool)
            return self._ids
        return self._ids[self._open]

    def is_open(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` are followed and still open."""
        where = np.searchsorted(self._ids, ids)
        inside = where < len(self._ids)
        found = np.zeros(len(ids), dtype=bool)
        found[inside] = self._ids[where[inside]] == ids[inside]
        found[found] = self._open[where[found]]
        return found

    def close(self, ids: np.ndarray) -> np.ndarray:
        """Mark ``ids`` (unique among themselves) final; returns which of them were open."""
        closing = self.is_open(ids)
        self._open[np.searchsorted(self._ids, ids[closing])] = False
        self._count -= int(closing.sum())
        return closing


@dataclass(frozen=True)
class FollowSettings:
    """How to follow.

    :param src_number: narrows the queries when given.
    :param deadline: epoch seconds at which to stop waiting (the last round runs then).
    :param poll_interval: seconds between rounds that finalise messages (doubling while idle).
    :param max_poll_interval: the longest wait between rounds.
    :param max_concurrency: history calls in flight at once within a round.
    """

    src_number: str | None = None
    deadline: float = math.inf
    poll_interval: float = 60.0
    max_poll_interval: float = 900.0
    max_concurrency: int = 4


def next_delay(
    poll_interval: float, idle_rounds: int, remaining: float, max_interval: float
) -> float:
    """Seconds to wait before the next round.

    ``poll_interval`` after a round that finalised something; each round in a row that
    finalised nothing doubles the wait, up to ``max_interval``; never past the deadline
    (``remaining`` seconds away), so the last round runs when the wait ends.
    """
    delay = min(max_interval, poll_interval * 2 ** max(0, idle_rounds))
    return max(0.0, min(delay, remaining))


def stops_following(error: BaseException) -> bool:
    """True for errors every later round would meet the same way: unusable configuration or
    credentials, and the API's stopping codes (authorisation, forbidden, ...)."""
    return isinstance(error, InputError) or (
        isinstance(error, VoximplantApiError) and error.is_fatal
    )


class DeliveryFollower:
    """Polls the history about open messages until all are final or the deadline passes.

    :param api: the async history (``VoximplantAsyncHook``).
    :param ids: what to follow.
    :param settings: see :class:`FollowSettings`.
    :param on_done: called with the history rows of the messages the follower is done with,
        an answer at a time: each message once, when its row is final, or, in the last round,
        still pending. A message the last round does not find stays in ``open``.
    :param clock: epoch seconds (``deadline``'s clock); :param sleep: the wait between rounds.
    """

    def __init__(
        self,
        api: AsyncSmsHistory,
        ids: OpenIds,
        settings: FollowSettings = FollowSettings(),
        *,
        on_done: Callable[[list[dict]], Any] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        log: logging.Logger | logging.LoggerAdapter = log,
    ):
        self.api = api
        self.open = ids
        self.settings = settings
        self.on_done = on_done
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self.counts: dict[str, int] = {}
        self.final = 0
        self.rounds = 0
        self.calls = 0

    def state(self) -> dict[str, Any]:
        """Small and JSON-friendly: ``messages``, ``open`` (not final), ``counts`` (of the
        final ones, by status), ``rounds``, ``calls``."""
        return {
            "messages": self.open.total,
            "open": self.open.total - self.final,
            "counts": dict(self.counts),
            "rounds": self.rounds,
            "calls": self.calls,
        }

    async def run(self) -> str:
        """Rounds until every message is final (``"done"``) or the deadline (``"timeout"``).
        Raises the errors :func:`stops_following` names; others wait for the next round."""
        idle = 0
        while not self.open.done:
            last = self.clock() >= self.settings.deadline
            before = len(self.open)
            try:
                await self.poll_round(last=last)
            except VoximplantError as err:
                if stops_following(err):
                    raise
                self.log.warning("Delivery poll round failed, next round retries: %s", err)
            idle = 0 if len(self.open) < before else idle + 1
            self.log.info(
                "Round %d: %d final, %d open (%d call(s) so far)",
                self.rounds,
                self.final,
                self.open.total - self.final,
                self.calls,
            )
            if self.open.done or last:
                break
            s = self.settings
            remaining = max(0.0, s.deadline - self.clock())
            await self.sleep(next_delay(s.poll_interval, idle - 1, remaining, s.max_poll_interval))
        return "done" if self.final == self.open.total else "timeout"

    async def poll_round(self, last: bool = False) -> int:
        """Ask once about every open message, ``max_concurrency`` calls at a time; returns how
        many became final. ``last``: the messages shown still pending are done with too. The
        first failing call's error is raised once the others stopped."""
        queries = history.id_queries(self.open.open_ids(), source_number=self.settings.src_number)
        finished = 0

        async def worker() -> None:
            nonlocal finished
            for query in queries:  # shared: each worker takes the next query
                rows = await history.read_async(history.pages(query), self._call)
                loop = asyncio.get_running_loop()
                done = await loop.run_in_executor(_APPLYING, self.apply, rows, last)
                finished += done  # after the await: other workers added theirs meanwhile

        calls = math.ceil(len(self.open) / history.IDS_PER_QUERY)
        workers = [asyncio.ensure_future(worker()) for _ in range(min(self._width, calls))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self.rounds += 1
        return finished

    def apply(self, raw_rows: list[dict], last: bool = False) -> int:
        """Record history rows; returns how many messages became final.

        Column by column, and no object is kept per row: an answer leaves nothing behind for
        the garbage collector to walk (a full collection of a triggerer's heap holds the loop
        for a tenth of a second or more). ``last``: rows still pending close their messages
        too (handed to ``on_done``, not counted as final).
        """
        n = len(raw_rows)
        ids = np.fromiter(map(message_id_of, raw_rows), dtype=np.int64, count=n)
        statuses = [row_status(row) for row in raw_rows]
        final = np.fromiter((s in FINAL_STATUSES for s in statuses), dtype=bool, count=n)
        usable = _last_of_each(ids) & (ids != NO_ID)
        ending = np.flatnonzero(usable & (final | last))
        ended = ending[self.open.close(ids[ending])].tolist()
        finished = 0
        for i in ended:
            if statuses[i] in FINAL_STATUSES:
                self.counts[statuses[i]] = self.counts.get(statuses[i], 0) + 1
                finished += 1
        self.final += finished
        if self.on_done is not None and ended:
            self.on_done([raw_rows[i] for i in ended])
        return finished

    @property
    def _width(self) -> int:
        return max(1, self.settings.max_concurrency)

    async def _call(self, **params: Any) -> dict:
        self.calls += 1
        return await self.api.a2p_get_sms_history(**params)


def _last_of_each(ids: np.ndarray) -> np.ndarray:
    """A mask of the last occurrence of each id (an answer naming one message twice counts
    it once, as its last row says)."""
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    keep = np.ones(len(ids), dtype=bool)
    keep[order[:-1][ordered[:-1] == ordered[1:]]] = False
    return keep
