"""One reader of ``A2PGetSmsHistory``, for settling (blocking) and delivery (async) alike.

What to ask is a *plan*: a generator that yields the parameters of each call, is sent each
answer, and returns what it read. Plans do no I/O of their own; :func:`read` drives one with a
blocking ``call(**params)`` (the hook's ``a2p_get_sms_history``), :func:`read_async` with an
awaitable one (the async hook's), so paging and its stop rule exist once.

Paging: a query asks for ``count`` rows (at most ``HISTORY_PAGE``, the API's largest page) from
``offset``. The next page starts where the rows received end, while the answer's
``total_count`` says more rows match (a server may return fewer rows than ``count``); when an
answer gives no total, while pages come back full. An empty page always ends the query.
Message ids are asked about ``IDS_PER_QUERY`` at a time (``message_id`` as a ``;``-joined list),
so following a million messages costs a thousand calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

HISTORY_PAGE = 1000  # the most rows A2PGetSmsHistory returns per call
IDS_PER_QUERY = 1000  # message ids per call: each has at most one row, so one page answers

T = TypeVar("T")
#: Yields call parameters, is sent each answer, returns what it read.
Plan = Generator[dict[str, Any], dict, T]


def pages(query: dict[str, Any], first: dict | None = None) -> Plan[list[dict]]:
    """Every row ``query`` matches, page by page (see the module's paging rule).

    :param first: the answer to ``query`` at its own offset, when the caller already has it
        (a probe that decided what to read next); reading goes on from there.
    """
    count = query.get("count") or HISTORY_PAGE
    offset = query.get("offset") or 0
    rows: list[dict] = []
    answer = first
    while True:
        if answer is None:
            answer = yield {**query, "count": count, "offset": offset}
        page = list(answer.get("result") or [])
        rows += page
        offset += len(page)
        total = _total(answer)
        if not page or (offset >= total if total is not None else len(page) < count):
            return rows
        answer = None


def id_queries(ids: Sequence[int], **filters: Any) -> Iterator[dict[str, Any]]:
    """The queries that ask about ``ids``, ``IDS_PER_QUERY`` at a time, in the order given
    (sorted ids give sorted chunks); filters that are None are left out. Lazy: a sorted numpy
    array is sliced one chunk per query, never copied whole."""
    filters = {key: value for key, value in filters.items() if value is not None}
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        listed = chunk.tolist() if hasattr(chunk, "tolist") else [int(i) for i in chunk]
        yield {"message_id": listed, **filters, "count": HISTORY_PAGE, "offset": 0}


def rows_by_ids(ids: Sequence[int], **filters: Any) -> Plan[list[dict]]:
    """Every row of the messages ``ids``."""
    rows: list[dict] = []
    for query in id_queries(ids, **filters):
        rows += yield from pages(query)
    return rows


def read(plan: Plan[T], call: Callable[..., dict]) -> T:
    """Run ``plan`` with a blocking ``call(**params) -> answer``; returns what it returns."""
    try:
        params = next(plan)
        while True:
            params = plan.send(call(**params))
    except StopIteration as done:
        return done.value


async def read_async(plan: Plan[T], call: Callable[..., Awaitable[dict]]) -> T:
    """Run ``plan`` with an async ``call(**params) -> answer``; returns what it returns."""
    try:
        params = next(plan)
        while True:
            params = plan.send(await call(**params))
    except StopIteration as done:
        return done.value


def _total(answer: dict) -> int | None:
    try:
        return int(answer["total_count"])
    except (KeyError, TypeError, ValueError):
        return None
