"""The one history reader (sms/history.py): paging, its stop rule, ids per call, both drivers."""

from __future__ import annotations

import asyncio

from airflow_provider_voxsms.sms import history


def answers(*pages_of_rows, total=None):
    """A blocking call that answers with the given pages in turn, recording the parameters."""
    asked: list[dict] = []

    def call(**params):
        asked.append(params)
        rows = pages_of_rows[len(asked) - 1]
        return {"result": rows} | ({} if total is None else {"total_count": total})

    return call, asked


def test_pages_follow_total_count_also_past_a_short_page():
    call, asked = answers([1] * 600, [2] * 400, total=1000)
    rows = history.read(history.pages({"message_id": [1]}), call)
    assert rows == [1] * 600 + [2] * 400
    assert [(q["offset"], q["count"]) for q in asked] == [(0, 1000), (600, 1000)]


def test_without_a_total_pages_go_on_while_full():
    call, asked = answers([1] * 3, [2] * 3, [3])
    assert history.read(history.pages({"count": 3}), call) == [1, 1, 1, 2, 2, 2, 3]
    assert [q["offset"] for q in asked] == [0, 3, 6]


def test_an_empty_page_ends_a_query_whatever_the_total_says():
    call, asked = answers([1] * 2, [], total=10)
    assert history.read(history.pages({}), call) == [1, 1] and len(asked) == 2


def test_reading_goes_on_from_an_answer_already_in_hand():
    call, asked = answers([2] * 5, total=15)
    first = {"result": [1] * 10, "total_count": 15}
    rows = history.read(history.pages({"count": 10, "offset": 0}, first=first), call)
    assert rows == [1] * 10 + [2] * 5 and [q["offset"] for q in asked] == [10]


def test_ids_are_asked_1000_per_call_in_the_order_given():
    ids = list(range(2500))
    queries = list(history.id_queries(ids, source_number="VoxDemo", destination_number=None))
    assert [len(q["message_id"]) for q in queries] == [1000, 1000, 500]
    assert queries[2]["message_id"][0] == 2000 and "destination_number" not in queries[0]

    def call(**params):
        found = [{"message_id": i} for i in params["message_id"]]
        return {"result": found, "total_count": len(found)}

    rows = history.read(history.rows_by_ids(ids), call)
    assert [row["message_id"] for row in rows] == ids


def test_the_async_driver_runs_the_same_plan():
    call, asked = answers([1] * 600, [2] * 400, total=1000)

    async def acall(**params):
        await asyncio.sleep(0)
        return call(**params)

    rows = asyncio.run(history.read_async(history.pages({"message_id": [1]}), acall))
    assert rows == [1] * 600 + [2] * 400 and [q["offset"] for q in asked] == [0, 600]
