"""The send ledger's row payloads: a claim's numbers and an answered batch's outcome, as JSON.

An outcome row holds, per status, its entries as columns (version 2: ``{"v": 2, "accepted":
[[numbers], [message ids]], "failed": [[numbers], [codes], [descriptions]], "unknown":
[[numbers], [reasons]]}``): a retry parses columns faster than rows. Rows written by earlier
builds (``{"accepted": [[number, id], ...], ...}``) are still read.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_voxsms.sms.model import ACCEPTED, FAILED, UNKNOWN, BatchOutcome

STATUSES = (ACCEPTED, FAILED, UNKNOWN)


def encode(value: Any) -> str:
    """Compact JSON (a claim's numbers)."""
    return json.dumps(value, separators=(",", ":"))


def encode_outcome(outcome: BatchOutcome) -> str:
    """A sent batch's answer as a version 2 payload."""
    payload: dict[str, Any] = {"v": 2}
    for status, entries in (
        (ACCEPTED, outcome.accepted),
        (FAILED, outcome.failed),
        (UNKNOWN, outcome.unknown),
    ):
        if entries:
            payload[status] = [list(column) for column in zip(*entries, strict=True)]
    return encode(payload)


def decode_outcome(raw: str) -> dict[str, list[list]]:
    """An outcome row's entries as columns per status, whichever version wrote it."""
    payload = json.loads(raw)
    if payload.pop("v", None) == 2:
        return payload
    return {
        status: [list(c) for c in zip(*rows, strict=True)]
        for status, rows in payload.items()
        if rows
    }
