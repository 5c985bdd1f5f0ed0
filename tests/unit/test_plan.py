"""Request planning: grouping by text, chunking into batches of at most 100, segment totals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_provider_voxsms.sms.plan import Batch, plan_batches
from airflow_provider_voxsms.sms.recipients import prepare_recipients


def numbers(n: int, start: int = 447400000000) -> list[str]:
    return [str(start + i) for i in range(n)]


def frame(phones: list[str], texts: list[str] | str) -> pd.DataFrame:
    if isinstance(texts, str):
        texts = [texts] * len(phones)
    return pd.DataFrame({"phone": phones, "text": texts})


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [
        (0, 100, []),
        (1, 100, [1]),
        (99, 100, [99]),
        (100, 100, [100]),
        (101, 100, [100, 1]),
        (250, 100, [100, 100, 50]),
        (3, 1, [1, 1, 1]),
        (250, 99, [99, 99, 52]),
    ],
)
def test_batch_sizes(count, batch_size, sizes):
    phones = numbers(count)
    plan = plan_batches(frame(phones, "hi"), batch_size=batch_size)
    assert [len(b.numbers) for b in plan.batches] == sizes
    assert [b.index for b in plan.batches] == list(range(len(sizes)))
    assert [n for b in plan.batches for n in b.numbers] == phones  # row order kept
    assert plan.recipients == count


@pytest.mark.parametrize("batch_size", [0, -1, 101, 1000])
def test_batch_size_out_of_range(batch_size):
    with pytest.raises(ValueError, match=r"between 1 and 100.*at most 100 numbers per request"):
        plan_batches(frame(numbers(1), "hi"), batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1.5, "100", True, None])
def test_batch_size_must_be_an_integer(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        plan_batches(frame(numbers(1), "hi"), batch_size=batch_size)


def test_mixed_texts_never_share_a_batch():
    phones = numbers(7)
    texts = ["a", "b", "a", "c", "b", "a", "a"]
    plan = plan_batches(frame(phones, texts), batch_size=2)
    assert [(b.text, b.numbers) for b in plan.batches] == [
        ("a", (phones[0], phones[2])),
        ("a", (phones[5], phones[6])),
        ("b", (phones[1], phones[4])),
        ("c", (phones[3],)),
    ]
    assert plan.texts == 3
    assert all(isinstance(b, Batch) for b in plan.batches)


def test_segments_and_summary():
    long_gsm = "x" * 161  # two GSM-7 segments
    emoji = "hi \N{GRINNING FACE}"  # one UCS-2 segment
    texts = [long_gsm] * 3 + [emoji] * 2
    plan = plan_batches(frame(numbers(5), texts))
    assert plan.segments_per_message == {long_gsm: 2, emoji: 1}
    assert plan.total_segments == 3 * 2 + 2 * 1
    assert plan.encodings == {"GSM-7": 3, "UCS-2": 2}
    summary = plan.summary()
    assert summary == {
        "recipients": 5,
        "batches": 2,
        "texts": 2,
        "total_segments": 8,
        "max_segments_per_message": 2,
        "encodings": {"GSM-7": 3, "UCS-2": 2},
    }
    json.dumps(summary)


def test_empty_plan_summary():
    plan = plan_batches(frame([], []))
    assert plan.batches == []
    assert plan.summary() == {
        "recipients": 0,
        "batches": 0,
        "texts": 0,
        "total_segments": 0,
        "max_segments_per_message": 0,
        "encodings": {},
    }


def test_plans_prepared_recipients():
    rows = [{"phone": p, "text": "a" if i % 3 else "b"} for i, p in enumerate(numbers(250))]
    prepared = prepare_recipients(rows, text_column="text")
    plan = plan_batches(prepared.valid)
    assert plan.recipients == 250
    assert sorted(n for b in plan.batches for n in b.numbers) == numbers(250)
    assert all(len(b.numbers) <= 100 for b in plan.batches)
    assert {b.text for b in plan.batches} == {"a", "b"}


def test_rejects_frames_that_are_not_prepared():
    with pytest.raises(ValueError, match="missing \\['text'\\]"):
        plan_batches(pd.DataFrame({"phone": ["447443332212"]}))
    with pytest.raises(ValueError, match="without a text"):
        plan_batches(frame(["447443332212"], [None]))
    with pytest.raises(ValueError, match="without a phone"):
        plan_batches(frame([None], "hi"))
