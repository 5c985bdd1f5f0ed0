"""Property tests: messy input never crashes, never loses or repeats a row, batches are well formed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_voxsms.sms.plan import plan_batches
from airflow_provider_voxsms.sms.recipients import (
    RecipientsError,
    prepare_recipients,
)

phone_chars = st.sampled_from(list("0123456789+- ().()/\u00a0\u0664\uff14ax#"))
phone_like = st.one_of(
    st.text(phone_chars, max_size=20),
    st.from_regex(r"(\+|00)?[1-9][0-9]{7,14}", fullmatch=True),
    st.from_regex(r"\+44 ?7[0-9]{3} ?[0-9]{6}", fullmatch=True),
    st.text(max_size=20),
    st.integers(),
    st.integers(min_value=10**7, max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e7, max_value=1e15).map(math.floor).map(float),
    st.none(),
    st.just(pd.NA),
    st.just(np.nan),
)
texts = st.sampled_from(["hello", "hello", "привет", "x" * 200, "", " ", None, "a\x01"])
regions = st.sampled_from([None, "GB", "US"])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_accounting(prepared, n: int) -> None:
    assert prepared.total == n
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates
    assert not prepared.valid.duplicated(["phone", "text"]).any()
    rows = set(prepared.valid.index) | set(prepared.invalid["row"])
    assert len(rows) == len(prepared.valid) + len(prepared.invalid)
    assert rows <= set(range(n))
    assert prepared.valid.index.is_monotonic_increasing
    phones = prepared.valid["phone"]
    assert phones.str.fullmatch(r"[1-9][0-9]{7,14}").all()


def check_plan(prepared, batch_size: int) -> None:
    plan = plan_batches(prepared.valid, batch_size=batch_size)
    sent = [(n, b.text) for b in plan.batches for n in b.numbers]
    expected = list(prepared.valid[["phone", "text"]].itertuples(index=False, name=None))
    assert sorted(sent) == sorted(expected)
    assert len(set(sent)) == len(sent)
    assert plan.recipients == len(prepared.valid)
    assert [b.index for b in plan.batches] == list(range(len(plan.batches)))
    for batch in plan.batches:
        assert 1 <= len(batch.numbers) <= batch_size


@FAST
@given(values=st.lists(phone_like, max_size=40), region=regions, batch_size=st.integers(1, 100))
def test_any_phone_list_is_accounted_for(values, region, batch_size):
    prepared = prepare_recipients(values, text="hi", default_region=region)
    check_accounting(prepared, len(values))
    check_plan(prepared, batch_size)


@FAST
@given(
    rows=st.lists(st.tuples(phone_like, texts), max_size=40),
    region=regions,
    batch_size=st.integers(1, 5),
)
def test_any_rows_with_texts_are_accounted_for(rows, region, batch_size):
    frame = pd.DataFrame(rows, columns=["phone", "text"], dtype=object)
    prepared = prepare_recipients(frame, text_column="text", default_region=region)
    check_accounting(prepared, len(rows))
    check_plan(prepared, batch_size)


@FAST
@given(
    recipients=st.one_of(
        st.lists(st.one_of(phone_like, st.binary(max_size=5), st.booleans())),
        st.text(max_size=5),
        st.integers(),
        st.dictionaries(st.text(max_size=3), phone_like, max_size=3),
        st.lists(st.dictionaries(st.sampled_from(["phone", "text", "x"]), phone_like), max_size=5),
    ),
    text=st.one_of(st.text(max_size=30), st.none()),
)
def test_nothing_but_recipients_error(recipients, text):
    try:
        prepared = prepare_recipients(recipients, text=text if text is not None else "hi")
    except RecipientsError:
        return
    check_accounting(prepared, len(recipients))
