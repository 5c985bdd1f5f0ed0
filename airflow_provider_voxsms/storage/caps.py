"""Frequency caps: at most ``count`` messages per number within a trailing window, counted
over every campaign that uses the same send ledger.

A claim stores its numbers as one JSON value, which cannot be counted per number, so every
claim (capped or not) also writes one row per number to ``<table>_contacts`` (number,
campaign digest, text hash, time). A capped claim writes them in its own transaction, so its
sends count for the other capped campaigns from the moment it commits. An uncapped claim
queues them right after it commits, with the ledger's other queued writes (outcomes): they
count a few milliseconds later, and its request does not wait for them (in the claim's
transaction they tripled a sender's wait for its claim: bench section 7). Nothing is lost by
that: an uncapped campaign is not held back by caps, so a capped campaign sending at the
same moment could always text the same person. A row stands for a message that was
accepted or may have been (in flight, unknown: counted until settled, to be safe); the rows
of a message the API refused, or whose request never reached it, are deleted when that
outcome is recorded. A number its campaign sends again because the history showed the first
request never arrived has a row per send, and both count until the window passes: to be safe,
and only caps above one can tell.

A capped claim first updates the one row of ``<table>_cap_lock`` (after its lease row), then
counts, per number of its batch, the messages of *other* campaigns since ``now - window``
(a campaign's retries and clears share its digest, so its own earlier sends never count),
and claims only the numbers below ``count``; the claim of the rest and their contact rows
commit with that update. PostgreSQL makes the next capped claim wait on the row until then,
and its count (a new snapshot per statement at READ COMMITTED) sees the rows just committed;
SQLite lets one writer at a time. So two capped campaigns claiming the same number at the
same moment never both get it. Uncapped claims skip the lock (they never wait for capped
ones); their sends count once their contact rows commit.

Lock order: a lease row, then the cap lock, never the other way, and the transaction holding
the cap lock waits for nothing else, so no two claims can deadlock. Reads stay per batch
(an indexed look-up of at most 100 numbers): nothing loads the contacts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from numbers import Real
from typing import Any

from airflow_provider_voxsms.storage.sql import is_unique_violation

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``count`` messages per number within the trailing ``window``."""

    count: int
    window: timedelta

    @classmethod
    def of(cls, value: Any) -> FrequencyCap | None:
        """A cap from ``(count, window)`` (the window a ``timedelta`` or seconds), None for
        None; ``ValueError`` naming what is wrong otherwise."""
        if value is None or isinstance(value, FrequencyCap):
            return value
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(
                "frequency_cap is (count, window): at most count messages per number within "
                f"the trailing window, e.g. (1, timedelta(hours=24)); got {value!r}."
            )
        count, window = value
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"frequency_cap's count must be an integer >= 1, got {count!r}.")
        if isinstance(window, Real) and not isinstance(window, bool):
            window = timedelta(seconds=float(window))
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise ValueError(
                "frequency_cap's window must be a positive timedelta (or seconds), got "
                f"{value[1]!r}."
            )
        return cls(count, window)


class Contacts:
    """The contacts of one ledger (``<table>_contacts``) and its cap lock, as the statements a
    claim or an outcome runs on the ledger writer's cursor."""

    def __init__(self, table: str, placeholder: str, clock: Clock = utc_now) -> None:
        self.table, self.mark, self.clock = table, placeholder, clock

    def now(self) -> datetime:
        """The time contacts are stamped with and windows end at (stored to the microsecond:
        a window of a day must not let a second message through a second early)."""
        return self.clock()

    def lock(self, cur: Any) -> None:
        """Take the cap lock: held until the claim's transaction ends."""
        cur.execute(
            f"UPDATE {self.table}_cap_lock SET locked_at = {self.mark} WHERE id = 1",
            (stamp(self.now()),),
        )
        if cur.rowcount != 1:
            raise RuntimeError(f"{self.table}_cap_lock has no row: the ledger was not opened")

    def refused(
        self, cur: Any, numbers: Sequence[str], own: str, cap: FrequencyCap, now: datetime
    ) -> set[str]:
        """The numbers that campaigns other than ``own`` (a digest) sent ``cap.count``
        messages or more since ``now - cap.window``.

        One correlated count per number that stops at ``cap.count`` rows: an index range
        scan however old the ledger, planned as one even on a table PostgreSQL has not
        analysed yet (``number IN (...)`` was a sequential scan of every contact until
        autovacuum's first ANALYZE, and a count of DISTINCT messages was costed high enough
        to be JIT-compiled, 10 ms a claim).
        """
        if not numbers:
            return set()
        m, limit = self.mark, int(cap.count)
        cur.execute(
            f"SELECT column1, (SELECT COUNT(*) FROM (SELECT 1 AS one FROM {self.table}_contacts "
            f"c WHERE c.number = wanted.column1 AND c.claimed_at >= {m} AND c.ti_key <> {m} "
            f"LIMIT {limit}) messages) "
            f"FROM (VALUES {', '.join([f'({m})'] * len(numbers))}) AS wanted",
            (stamp(now - cap.window), own, *numbers),
        )
        return {number for number, count in cur.fetchall() if count >= limit}

    def add(
        self, cur: Any, ti_key: str, text_hash: str, numbers: Sequence[str], now: datetime
    ) -> None:
        """One contact per number, as sent by campaign ``ti_key`` at ``now``: one statement
        with one parameter a number (``executemany`` makes a round trip per row on some
        drivers, and four parameters a row took PostgreSQL twice as long to parse)."""
        m = self.mark
        cur.execute(
            f"INSERT INTO {self.table}_contacts (number, ti_key, text_hash, claimed_at) "
            f"SELECT column1, {m}, {m}, {m} FROM (VALUES "
            + ", ".join([f"({m})"] * len(numbers))
            + ") AS claimed",
            (ti_key, text_hash, stamp(now), *numbers),
        )

    def free(self, cur: Any, ti_key: str, text_hash: str, numbers: Sequence[str]) -> None:
        """Forget messages that were not accepted (refused by the API, or never sent): a
        statement a number, each an index look-up (a list of numbers could be planned as a
        scan of every contact, as in :meth:`refused`). Rare, and off the claims' path."""
        if not numbers:
            return
        m = self.mark
        cur.executemany(
            f"DELETE FROM {self.table}_contacts WHERE number = {m} AND ti_key = {m} "
            f"AND text_hash = {m}",
            [(number, ti_key, text_hash) for number in numbers],
        )

    def ensure_lock_row(self, conn: Any) -> None:
        """Insert the cap lock's row where absent (once per ledger; committed)."""
        with closing(conn.cursor()) as cur:
            cur.execute(f"SELECT COUNT(*) FROM {self.table}_cap_lock")
            ((rows,),) = cur.fetchall()
            if rows:
                conn.commit()
                return
            try:
                cur.execute(
                    f"INSERT INTO {self.table}_cap_lock (id, locked_at) VALUES (1, {self.mark})",
                    (stamp(self.now()),),
                )
                conn.commit()
            except Exception as err:  # another ledger inserted it first
                conn.rollback()
                if not is_unique_violation(err):
                    raise


def stamp(moment: datetime) -> str:
    """A UTC time as the contacts table stores it: ``YYYY-MM-DD HH:MM:SS.ffffff``, no zone
    (always six decimals, so SQLite's text comparison orders them)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
