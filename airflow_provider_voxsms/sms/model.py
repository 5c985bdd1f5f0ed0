"""The campaign's vocabulary: a request (batch), what came of it (outcome), the run's report.

This module imports nothing else of the provider, so every other module can use it.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH_SIZE = 100  # A2PSendSms accepts at most 100 destination numbers per request

# The columns of every failed-numbers frame and table, whatever the stage:
# ``destination_number`` is the normalised number (digits-only E.164; missing when the input is
# not a usable number), ``input_number`` the value as the input wrote it, and ``stage`` one of
# ``validation`` (never sent), ``api`` (the API refused the number), ``not_sent`` (never reached
# the API) or ``delivery`` (accepted, then not delivered).
FAILED_COLUMNS = ["destination_number", "input_number", "error_code", "error_description", "stage"]
FAILED_STAGES = ("validation", "api", "not_sent", "capped", "expired", "delivery")

# Each input row's outcome in the results table (``results.ResultsTable``), one of ``OUTCOMES``.
OUTCOMES = (
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "invalid",
    "duplicate",
    "suppressed",
    "deferred",
    "capped",
    "expired",
    "held_out",
)
OUTCOME_COLUMNS = [
    "destination_number",
    "input_number",
    "outcome",
    "message_id",
    "error_code",
    "reason",
    "time_zone",
    "next_window_start",
    "variant",
]

# A2PGetSmsHistory's delivery_status codes (the API's filter takes the number, rows the name).
DELIVERY_STATUS_NAMES = {
    1: "QUEUED",
    2: "DISPATCHED",
    3: "ABORTED",
    4: "REJECTED",
    5: "DELIVERED",
    6: "FAILED",
    7: "EXPIRED",
    8: "UNKNOWN",
}

# What the send ledger knows of a number; ``in_flight``: claimed, no answer recorded.
IN_FLIGHT, ACCEPTED, FAILED, UNKNOWN = "in_flight", "accepted", "failed", "unknown"


@dataclass(frozen=True, slots=True)
class Batch:
    """One A2PSendSms request: one text to 1..100 numbers; ``index`` is its place in the plan."""

    index: int
    text: str
    numbers: tuple[str, ...]


@dataclass(frozen=True)
class A2PSendSmsResponse:
    """What ``A2PSendSms`` answered for one request: accepted and failed numbers, and fragments."""

    result: list[dict]
    failed: list[dict]
    fragments_count: int


@dataclass
class BatchOutcome:
    """What happened to one batch's numbers; every number is in exactly one list.

    ``accepted``: (number, message_id); ``failed``: the API refused the number (number, code,
    why); ``not_sent``: the request provably never reached the API (number, code, why);
    ``unknown``: it may or may not have been processed (number, why); ``capped``: the ledger
    refused the number at its claim, a frequency cap being reached (number, why); ``expired``:
    the campaign's validity period ended before it was sent (number, why). ``retry_later`` marks a
    ``not_sent`` batch that may be sent again in this run (throttled past the hook's attempts),
    as opposed to one the run stopped before. ``owned`` is False when another try of the task
    holds these numbers. ``started_at`` / ``finished_at`` are epoch seconds around the request.
    """

    batch: Batch
    accepted: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int | None, str]] = field(default_factory=list)
    not_sent: list[tuple[str, int | None, str]] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)
    capped: list[tuple[str, str]] = field(default_factory=list)
    expired: list[tuple[str, str]] = field(default_factory=list)
    fragments: int = 0
    retry_later: bool = False
    owned: bool = True
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def sent(self) -> bool:
        """False when the request never reached the API: its numbers may be sent again."""
        return not self.not_sent


@dataclass
class CampaignReport:
    """Every number's final outcome, grouped in batch outcomes, and what the run had to do.

    ``reconciled``: numbers an ambiguous answer left open that the history showed accepted;
    ``resent``: numbers sent again in this run (the history showed they never arrived, or
    their request was throttled past the hook's attempts); ``earlier``: numbers an earlier try
    of the task instance had settled; ``stopped_by``: the error that stopped the run, if any;
    ``held``: the rows (``phone``, ``text``) kept back unsent because ``hold`` said so (outside
    their send window), for a later run.
    """

    outcomes: list[BatchOutcome] = field(default_factory=list)
    stopped_by: BaseException | None = None
    held: Any = None
    reconciled: int = 0
    resent: int = 0
    earlier: int = 0

    def total(self, kind: str) -> int:
        """Numbers in one outcome list (``accepted``, ``failed``, ``not_sent``, ``unknown``)."""
        return sum(len(getattr(outcome, kind)) for outcome in self.outcomes)


def text_hash(text: str) -> str:
    """A short stable digest of a message text (the send ledger keys numbers by it)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@contextmanager
def bulk_objects() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small containers are built.

    They cannot form cycles, but each allocation burst makes the collector walk every live
    object again: for a million numbers that was a third of a retry's resume time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
