"""Text variants and a hold-out group: which variant each number gets, the same every time.

A number's variant comes from a stable 64-bit hash of the seed and the normalised number, so
retries, clears and later runs of the task give it the same variant, and the shares follow
the weights for any large list. The hash is integer arithmetic on numpy arrays (splitmix64 of
the number mixed with the seed's SHA-256), so a million numbers take milliseconds and the
result does not depend on the Python or numpy version. Numbers whose hash falls below
``holdout`` form the hold-out group: they are never sent, to measure what the campaign changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.templates import parse_template, render

__all__ = ["HOLDOUT", "Variants", "placeholders", "variant_texts"]

HOLDOUT = "holdout"
MAX_HOLDOUT = 0.5
_TWO_64 = float(2**64)


@dataclass(frozen=True)
class Variants:
    """Named texts (templates allowed), their weights, the hold-out share and the seed."""

    texts: dict[str, str]
    weights: tuple[float, ...]
    holdout: float
    seed: str

    @classmethod
    def parse(
        cls,
        texts: Mapping[str, str],
        weights: Mapping[str, float] | None = None,
        holdout: float = 0.0,
        *,
        seed: str,
    ) -> Variants:
        """Check the arguments; raise ``ValueError`` naming what is wrong and how to fix it."""
        if not isinstance(texts, Mapping) or not texts:
            raise ValueError(
                'text_variants must be a non-empty dict such as {"A": "...", "B": "..."}'
            )
        for name, text in texts.items():
            if not isinstance(name, str) or not name or name == HOLDOUT:
                raise ValueError(
                    f"text_variants names must be non-empty strings other than {HOLDOUT!r}, "
                    f"got {name!r}"
                )
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text_variants[{name!r}] must be a non-empty text")
        weights = dict(weights) if weights is not None else dict.fromkeys(texts, 1.0)
        if set(weights) != set(texts):
            raise ValueError(
                f"variant_weights must name exactly the variants {sorted(texts)}, got "
                f"{sorted(weights)}"
            )
        if any(
            not isinstance(w, int | float) or isinstance(w, bool) or w < 0 for w in weights.values()
        ):
            raise ValueError(f"variant_weights must be numbers >= 0, got {weights}")
        total = float(sum(weights.values()))
        if total <= 0:
            raise ValueError("variant_weights must not all be 0")
        if isinstance(holdout, bool) or not 0 <= holdout <= MAX_HOLDOUT:
            raise ValueError(f"holdout is a share from 0 to {MAX_HOLDOUT}, got {holdout!r}")
        shares = tuple(weights[name] / total for name in texts)
        return cls(dict(texts), shares, float(holdout), seed)

    @property
    def names(self) -> list[str]:
        return list(self.texts)

    def assign(self, numbers: pd.Series) -> pd.Categorical:
        """Each normalised number's variant name (``HOLDOUT`` for the hold-out group)."""
        share = _uniform(numbers, self.seed)
        edges = self.holdout + (1.0 - self.holdout) * np.cumsum(self.weights)
        codes = np.searchsorted(edges, share, side="right")  # 0..len-1; past the last: last
        codes = np.minimum(codes, len(self.weights) - 1)
        codes = np.where(share < self.holdout, len(self.weights), codes)
        return pd.Categorical.from_codes(codes, categories=[*self.names, HOLDOUT])


def variant_texts(
    variants: Variants, phone: pd.Series, cells: pd.DataFrame
) -> tuple[pd.Series, np.ndarray, pd.Categorical]:
    """Each row's text from its number's variant (a hold-out row gets the first variant's, so
    it is checked like the others), the rows' empty-placeholder reasons (None where fine), and
    the variants. ``phone`` holds the normalised numbers (missing where the row is invalid)."""
    assigned = variants.assign(phone.fillna("0").reset_index(drop=True))
    codes = np.where(assigned.codes == len(variants.texts), 0, assigned.codes)
    texts = pd.Series(None, index=range(len(phone)), dtype=object)
    reasons = np.full(len(phone), None, dtype=object)
    for i, text in enumerate(variants.texts.values()):
        rows = codes == i
        if not rows.any():
            continue
        template = parse_template(text)
        if template is None:
            texts[rows] = text
            continue
        rendered, empty = render(template, cells.reset_index(drop=True))
        texts[rows], reasons[rows] = rendered[rows], empty[rows]
    return texts, reasons, assigned


def placeholders(variants: Variants) -> list[str]:
    """The columns the variants' templates read, once each."""
    names = [parse_template(text) for text in variants.texts.values()]
    return list(dict.fromkeys(c for template in names if template for c in template.columns))


def _uniform(numbers: pd.Series, seed: str) -> np.ndarray:
    """A stable value in [0, 1) per number (digit strings of at most 15 digits)."""
    digits = pd.Series(numbers.array, dtype="string[pyarrow]")
    values = digits.astype("int64[pyarrow]").to_numpy(dtype=np.int64).view(np.uint64)
    salt = np.uint64(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    return _splitmix64(values ^ salt) / _TWO_64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a fixed, well-mixed permutation of 64-bit integers."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
