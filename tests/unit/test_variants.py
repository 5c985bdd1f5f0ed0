"""Variants: a stable variant per number, shares that follow the weights, a hold-out group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.sms.variants import HOLDOUT, Variants

NUMBERS = pd.Series([f"4474433{i:05d}" for i in range(10_000)], dtype=object)


def test_shares_follow_the_weights_and_the_holdout():
    variants = Variants.parse({"A": "a", "B": "b"}, holdout=0.2, seed="dag.send")
    shares = pd.Series(variants.assign(NUMBERS)).value_counts(normalize=True)
    assert abs(shares["A"] - 0.4) < 0.03 and abs(shares["B"] - 0.4) < 0.03
    assert abs(shares[HOLDOUT] - 0.2) < 0.03


def test_a_number_keeps_its_variant_across_runs_and_orders():
    variants = Variants.parse({"A": "a", "B": "b", "C": "c"}, seed="dag.send")
    first = pd.Series(variants.assign(NUMBERS), index=NUMBERS)
    shuffled = NUMBERS.sample(frac=1, random_state=3)
    again = pd.Series(
        Variants.parse({"A": "a", "B": "b", "C": "c"}, seed="dag.send").assign(shuffled),
        index=shuffled,
    )
    assert (again.reindex(NUMBERS).to_numpy() == first.to_numpy()).all()


def test_another_seed_draws_anew_and_weights_shift_shares():
    a = Variants.parse({"A": "a", "B": "b"}, seed="one").assign(NUMBERS)
    b = Variants.parse({"A": "a", "B": "b"}, seed="two").assign(NUMBERS)
    assert 0.4 < (np.asarray(a) == np.asarray(b)).mean() < 0.6
    skewed = Variants.parse({"A": "a", "B": "b"}, {"A": 9, "B": 1}, seed="one").assign(NUMBERS)
    assert abs((np.asarray(skewed) == "A").mean() - 0.9) < 0.02


def test_the_hash_is_fixed():
    """The same seed and number give the same variant in every version: pinned values (a
    change here reshuffles every running experiment)."""
    variants = Variants.parse({"A": "a", "B": "b"}, holdout=0.2, seed="voxsms.send")
    numbers = ["447443300000", "12015550123", "61291234567", "447443300001", "447443300002"]
    assert list(variants.assign(pd.Series(numbers))) == ["A", "B", "B", "A", HOLDOUT]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"texts": {}}, "non-empty dict"),
        ({"texts": {"holdout": "x"}}, "other than 'holdout'"),
        ({"texts": {"A": " "}}, "non-empty text"),
        ({"texts": {"A": "a"}, "weights": {"B": 1}}, "exactly the variants"),
        ({"texts": {"A": "a"}, "weights": {"A": -1}}, ">= 0"),
        ({"texts": {"A": "a"}, "weights": {"A": 0}}, "not all be 0"),
        ({"texts": {"A": "a"}, "holdout": 0.6}, "share from 0 to 0.5"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Variants.parse(seed="s", **kwargs)
