"""Group prepared recipients by text and cut each group into A2PSendSms requests.

One request carries one text and at most 100 numbers, so rows sharing a text share requests.
Groups come in order of each text's first row, numbers keep their row order inside a group, and
a group fills its requests greedily (250 numbers -> 100, 100, 50). Segments are counted once per
distinct text.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE, Batch
from airflow_provider_voxsms.sms.segments import Segments, count_segments

__all__ = ["SendPlan", "plan_batches"]


@dataclass(frozen=True)
class SendPlan:
    """All requests for a send, with what the messages will cost in segments.

    ``segments`` maps each distinct text to its encoding and segment count; ``encodings`` counts
    messages (numbers) per encoding; ``total_segments`` sums segments over all numbers.
    """

    batches: list[Batch]
    recipients: int
    texts: int
    segments: dict[str, Segments]
    encodings: dict[str, int]
    total_segments: int

    @property
    def segments_per_message(self) -> dict[str, int]:
        """Segment count of each distinct text."""
        return {text: seg.count for text, seg in self.segments.items()}

    def summary(self) -> dict:
        """A small JSON-friendly description (no texts, no numbers)."""
        return {
            "recipients": self.recipients,
            "batches": len(self.batches),
            "texts": self.texts,
            "total_segments": self.total_segments,
            "max_segments_per_message": max(self.segments_per_message.values(), default=0),
            "encodings": dict(self.encodings),
        }


def plan_batches(valid: pd.DataFrame, batch_size: int = MAX_BATCH_SIZE) -> SendPlan:
    """Plan the requests for ``PreparedRecipients.valid`` (columns ``phone`` and ``text``).

    :param valid: one row per message; numbers are not de-duplicated here.
    :param batch_size: numbers per request, 1..100.
    :raises ValueError: for a batch size out of range or a frame without usable columns.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral):
        raise ValueError(f"batch_size must be an integer, got {type(batch_size).__name__}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(
            f"batch_size must be between 1 and {MAX_BATCH_SIZE} (A2PSendSms takes at most "
            f"{MAX_BATCH_SIZE} numbers per request); got {batch_size}"
        )
    missing = [c for c in ("phone", "text") if c not in valid.columns]
    if missing:
        raise ValueError(f"valid needs columns 'phone' and 'text'; missing {missing}")
    if valid["phone"].isna().any():
        raise ValueError("valid has rows without a phone number; pass PreparedRecipients.valid")

    codes, uniques = pd.factorize(valid["text"], sort=False)
    if (codes < 0).any():
        raise ValueError("valid has rows without a text; pass PreparedRecipients.valid")
    texts = [str(t) for t in uniques]
    phones = valid["phone"].to_numpy(dtype=object)
    if len(texts) > 1:
        phones = phones[np.argsort(codes, kind="stable")]

    sizes = np.bincount(codes, minlength=len(texts))
    per_group = -(-sizes // batch_size)
    group_start = np.cumsum(sizes) - sizes
    group = np.repeat(np.arange(len(texts)), per_group)
    nth = np.arange(len(group)) - np.repeat(np.cumsum(per_group) - per_group, per_group)
    starts = group_start[group] + nth * batch_size
    ends = np.minimum(starts + batch_size, (group_start + sizes)[group])
    bounds = zip(group.tolist(), starts.tolist(), ends.tolist(), strict=True)
    batches = [Batch(i, texts[g], tuple(phones[s:e])) for i, (g, s, e) in enumerate(bounds)]

    segments = {text: count_segments(text) for text in texts}
    counts = np.array([segments[t].count for t in texts], dtype=np.int64)
    encodings: dict[str, int] = {}
    for text, size in zip(texts, sizes.tolist(), strict=True):
        encoding = segments[text].encoding
        encodings[encoding] = encodings.get(encoding, 0) + size
    return SendPlan(
        batches=batches,
        recipients=len(phones),
        texts=len(texts),
        segments=segments,
        encodings=encodings,
        total_segments=int(sizes @ counts) if len(texts) else 0,
    )
