"""Resume a campaign from what the send ledger knows of earlier tries of the same task instance.

Numbers an earlier try settled (accepted, or failed with the API's code and description) are
reported as that try saw them and not sent again. Numbers it claimed but left without a final
answer (``in_flight``: it stopped first; ``unknown``: the answer was ambiguous) are open: the
campaign settles them through the history before anything is sent again. Everything else is
sent. The work is a few vectorised passes, linear in the number of settled numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.model import ACCEPTED, FAILED, Batch, BatchOutcome, text_hash
from airflow_provider_voxsms.sms.settle import OpenNumber

EARLIER_TRY = "claimed by an earlier try that stopped before its answer was known"


@dataclass
class Resumed:
    """Rows still to send, earlier tries' settled outcomes, and the numbers left open."""

    to_send: pd.DataFrame
    settled: BatchOutcome | None
    open_numbers: list[OpenNumber]


def resume(valid: pd.DataFrame, previous: pd.DataFrame, *, settle_delay_s: float) -> Resumed:
    """Split ``valid`` (``phone``, ``text``) by the ledger's ``previous`` rows.

    ``previous`` has one row per (``destination_number``, ``text_hash``) with ``status``,
    ``message_id``, ``error_code``, ``error_description`` and ``claimed_at`` (epoch seconds),
    indexed by ``number + text_hash``, or by the number alone (index name
    ``destination_number``) when every claim had the same text.
    An open number becomes ready for the history ``settle_delay_s`` after its claim.
    """
    if previous.empty or valid.empty:
        return Resumed(valid, None, [])
    hashes = {text: text_hash(text) for text in pd.unique(valid["text"])}
    numbers, texts = valid["phone"].tolist(), valid["text"].tolist()
    if previous.index.name == "destination_number":  # the ledger's claims share one text
        (claimed_hash,) = set(previous["text_hash"].iloc[:1])
        if len(hashes) == 1 and claimed_hash in hashes.values():
            keys = numbers
        else:  # this try's texts differ from the claims': compare number and text
            previous = previous.set_index(previous["destination_number"] + previous["text_hash"])
            keys = [number + hashes[text] for number, text in zip(numbers, texts, strict=True)]
    else:
        keys = [number + hashes[text] for number, text in zip(numbers, texts, strict=True)]
    where = previous.index.get_indexer(pd.Index(keys, dtype=object))
    seen = where >= 0
    rows = previous.iloc[where[seen]]
    numbers = np.asarray(numbers, dtype=object)[seen]
    texts = np.asarray(texts, dtype=object)[seen]
    status = rows["status"].to_numpy()

    accepted, failed = status == ACCEPTED, status == FAILED
    settled = BatchOutcome(Batch(-1, "", ()), owned=False)  # many texts: no one batch
    settled.accepted = list(
        zip(
            numbers[accepted],
            rows["message_id"].to_numpy()[accepted].astype("int64").tolist(),
            strict=True,
        )
    )
    codes = rows["error_code"].to_numpy()[failed]
    settled.failed = list(
        zip(
            numbers[failed],
            [None if pd.isna(code) else int(code) for code in codes],
            rows["error_description"].to_numpy()[failed].tolist(),
            strict=True,
        )
    )
    still_open = ~(accepted | failed)
    claimed = rows["claimed_at"].to_numpy()[still_open].tolist()
    open_numbers = [
        OpenNumber(number, text, since, since + settle_delay_s, EARLIER_TRY)
        for number, text, since in zip(numbers[still_open], texts[still_open], claimed, strict=True)
    ]
    return Resumed(
        valid[~seen], settled if settled.accepted or settled.failed else None, open_numbers
    )
