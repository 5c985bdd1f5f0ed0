"""SeenKeys: exact membership of (number, text) pairs across chunks, checked against a set."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_voxsms.sms import seen as seen_module
from airflow_provider_voxsms.sms.seen import SeenKeys, pair_keys

numbers = st.integers(min_value=10_000_000, max_value=999_999_999_999_999).map(str)
texts = st.sampled_from(["Hello", "Hi Ann", "Hi Bob", "", "Привет"])
chunks = st.lists(st.lists(st.tuples(numbers, texts), max_size=40), max_size=8)


def chunk_frame(rows) -> tuple[pd.Series, pd.Series]:
    rows = list(dict.fromkeys(rows))  # a chunk is unique in itself (prepare_recipients)
    return pd.Series([n for n, _ in rows], dtype=object), pd.Series([t for _, t in rows])


@settings(max_examples=200, deadline=None)
@given(chunks=chunks, with_text=st.booleans(), run_keys=st.sampled_from([1, 3, 1 << 20]))
def test_a_pair_is_seen_exactly_when_an_earlier_chunk_took_it(chunks, with_text, run_keys):
    original = seen_module.RUN_KEYS
    seen_module.RUN_KEYS = run_keys  # tiny runs: lookups span many runs
    try:
        taken, oracle = SeenKeys(), set()
        for rows in chunks:
            if not with_text:
                rows = [(n, "same") for n, _ in rows]
            phones, chunk_texts = chunk_frame(rows)
            keys = pair_keys(phones, chunk_texts if with_text else None)
            mask = taken.take(keys)
            expected = [(n, t) in oracle for n, t in zip(phones, chunk_texts, strict=True)]
            assert mask.tolist() == expected
            oracle.update(zip(phones, chunk_texts, strict=True))
        assert len(taken) == len(oracle)
    finally:
        seen_module.RUN_KEYS = original


def test_keys_are_8_bytes_per_number_or_16_with_texts():
    phones = pd.Series([str(447700900000 + i) for i in range(1000)])
    one_text, many = SeenKeys(), SeenKeys()
    one_text.take(pair_keys(phones, None))
    many.take(pair_keys(phones, pd.Series(["a", "b"] * 500)))
    assert one_text.nbytes == 8_000 and many.nbytes == 16_000


def test_the_largest_number_and_leading_zero_bytes_compare_exactly():
    """Big-endian keys of small numbers start with zero bytes; none may compare equal."""
    phones = pd.Series(["10000000", "10000001", "999999999999999"])
    keys = pair_keys(phones, pd.Series(["x", "x", "x"]))
    assert len(np.unique(keys)) == 3
    taken = SeenKeys()
    assert not taken.take(keys[:1]).any()
    assert taken.take(keys).tolist() == [True, False, False]
