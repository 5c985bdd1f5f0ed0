"""The send ledger: tables remembering what each campaign sent, so a retry never re-sends.

Three tables, keyed by a digest of the campaign (:class:`~.key.CampaignKey`: dag id, task
id, map index and ``campaign_id``). ``<table>_leases`` has one row per campaign naming the try
that holds it and when the campaign first started: each try takes the lease over when it opens
the ledger, so the last to open (a retry starts after the try before it) holds it.
``<table>_claims`` holds one claim row per batch (its numbers as JSON), committed before the
batch's request goes out, in a transaction that first locks the lease row and finds it still
ours; a try that lost its lease claims nothing more, and the try that took it over read every
claim committed before the takeover. ``<table>_outcomes`` holds one row per answered batch
(``storage.codec``). The claim of a batch that provably never reached the API is deleted, so a
retry sends it. A retry therefore skips every settled number; a claimed number without a final
outcome (``in_flight`` or ``unknown``) is settled through the history before it is sent again.

Ledgers written before campaigns existed keyed rows by task instance (dag id, run id, task id,
map index): a try reads those rows too, and takes their lease over, so a retry after an upgrade
resumes from the tries before it; it writes under the campaign's key only.

With ``frequency_cap``, a claim refuses the numbers other campaigns of the same ledger
reached too often within the cap's window (``storage.caps``: every claim writes its numbers to
``<table>_contacts`` for that; capped claims take turns on ``<table>_cap_lock``).

Use it as a context manager: entering takes the lease and reads what earlier tries knew into a
compact index (:meth:`SendLedger.earlier` answers per chunk), leaving commits everything
queued. Writes go through a :class:`~.writer.GroupedWriter`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from airflow_provider_voxsms.errors import LedgerError
from airflow_provider_voxsms.sms.model import Batch, BatchOutcome, bulk_objects, text_hash
from airflow_provider_voxsms.storage import codec
from airflow_provider_voxsms.storage.caps import Clock, Contacts, FrequencyCap, utc_now
from airflow_provider_voxsms.storage.earlier import ClaimsReader, EarlierTries
from airflow_provider_voxsms.storage.key import CampaignKey
from airflow_provider_voxsms.storage.schema import (
    LEDGER_CAP_LOCK,
    LEDGER_CLAIMS,
    LEDGER_CONTACTS,
    LEDGER_LEASES,
    LEDGER_OUTCOMES,
    ensure_tables,
)
from airflow_provider_voxsms.storage.sql import (
    check_table_name,
    db_api_hook,
    is_unique_violation,
    stored_utc,
    transactional,
    utc_now_text,
)
from airflow_provider_voxsms.storage.writer import GroupedWriter, Refused

log = logging.getLogger(__name__)

READ_ROWS = 1_000  # claim or outcome rows fetched at a time when a ledger opens


class _LeaseLost(Refused):
    """A newer try of this campaign took the lease over; this try may claim nothing more."""


class SendLedger:
    """The ledger of one campaign on an Airflow SQL connection (SQLite, PostgreSQL, ...).

    :param conn_id: a connection whose hook is a common-sql ``DbApiHook``.
    :param key: the campaign the rows belong to.
    :param table: prefix of the ledger's tables (``_leases``, ``_claims``, ``_outcomes``,
        ``_contacts``, ``_cap_lock``), created if absent.
    :param frequency_cap: ``(count, window)``: a claim keeps only the numbers that other
        campaigns of this ledger sent fewer than ``count`` messages within the trailing
        ``window`` (a ``timedelta`` or seconds); None: no cap (the campaign's sends still
        count for other campaigns' caps).
    :param clock: the current time (aware), for the cap's windows and contacts.
    """

    def __init__(
        self,
        conn_id: str,
        key: CampaignKey,
        table: str = "voxsms_send_ledger",
        frequency_cap: FrequencyCap | tuple[int, timedelta | float] | None = None,
        *,
        clock: Clock = utc_now,
    ):
        check_table_name(f"{table}_outcomes")
        self.conn_id, self.key, self.table = conn_id, key, table
        self.frequency_cap = FrequencyCap.of(frequency_cap)
        self._clock = clock
        self.holder = uuid.uuid4().hex  # this try, in the lease table
        self.started_at: datetime | None = None  # the campaign's first start, once open
        self._earlier = EarlierTries.empty()
        self._writer = GroupedWriter(
            conn_id,
            what="send ledger",
            error=LedgerError,
            after_failure="Those numbers stay 'in_flight'; a retry reconciles them.",
        )
        self._claims: dict[tuple[str, tuple[str, ...]], str] = {}  # this try's batch -> claim_id
        self._lease_lost = False

    def __enter__(self) -> SendLedger:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            with suppress(LedgerError):  # the error in flight matters more
                self.close()

    # -- what earlier tries knew --------------------------------------------------------------

    def earlier(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What earlier tries knew of ``rows`` (``phone``, ``text``): the shape
        :func:`~airflow_provider_voxsms.sms.resume.resume` takes as ``previous``."""
        return self._earlier.of(rows)

    @property
    def has_earlier(self) -> bool:
        """Whether earlier tries claimed anything (a first try: False)."""
        return len(self._earlier) > 0

    @property
    def claimed_earlier(self) -> int:
        """Numbers (with their texts) earlier tries claimed. (No ``__len__``: a ledger with
        nothing earlier must not be falsy.)"""
        return len(self._earlier)

    @property
    def settled_earlier(self) -> int:
        """Numbers earlier tries saw accepted or failed."""
        return self._earlier.settled

    @property
    def open_earlier(self) -> int:
        """Numbers earlier tries claimed without a final answer."""
        return self._earlier.open

    # -- opening ------------------------------------------------------------------------------

    def open(self) -> SendLedger:
        """Create the tables if absent, take this campaign's lease over and read what earlier
        tries claimed and learnt.

        Raises :class:`LedgerError` (before anything is sent) when the database is unreachable.
        """
        try:
            self._hook = db_api_hook(self.conn_id)
            self._contacts = Contacts(self.table, self._hook.placeholder, self._clock)
            with transactional(self._hook) as conn:
                ensure_tables(conn, self._tables())
                if self.frequency_cap is not None:
                    self._contacts.ensure_lock_row(conn)
                for attempt in (1, 2):
                    try:
                        self._take_lease(conn)
                        break
                    except Exception as err:  # another try's first open inserted the lease
                        with suppress(Exception):  # a dead connection must not hide err
                            conn.rollback()
                        if attempt == 2 or not is_unique_violation(err):
                            raise
        except Exception as err:
            raise LedgerError(
                f"The send ledger on connection {self.conn_id!r} is unavailable "
                f"({type(err).__name__}: {err}). Nothing was sent; fix the connection or run "
                "without ledger_conn_id."
            ) from None
        self._writer.start()
        return self

    def _tables(self) -> list:
        t = self.table
        return [(LEDGER_CLAIMS, f"{t}_claims"), (LEDGER_OUTCOMES, f"{t}_outcomes"),
                (LEDGER_LEASES, f"{t}_leases"), (LEDGER_CONTACTS, f"{t}_contacts"),
                (LEDGER_CAP_LOCK, f"{t}_cap_lock")]  # fmt: skip

    def _take_lease(self, conn: Any) -> None:
        """In one transaction: make this try the holder of the campaign's lease (and of a
        lease an earlier version took for this task instance), then read the earlier rows.

        Taking the lease waits for a claim in progress (it locks the same row), so the read
        that follows sees every claim the previous holder will ever commit.
        """
        k, mark, now = self.key, self._hook.placeholder, utc_now_text()
        leases = f"{self.table}_leases"
        with closing(conn.cursor()) as cur:
            cur.execute(
                f"UPDATE {leases} SET holder = {mark}, taken_at = {mark}, run_id = {mark}, "
                f"started_at = COALESCE(started_at, {mark}) WHERE ti_key = {mark}",
                (self.holder, now, k.run_id, now, k.digest),
            )
            if cur.rowcount == 0:
                cur.execute(
                    f"INSERT INTO {leases} (ti_key, dag_id, run_id, task_id, map_index, "
                    f"campaign_id, holder, taken_at, started_at) VALUES ({self._marks(9)})",
                    (k.digest, k.dag_id, k.run_id, k.task_id, k.map_index, k.campaign_id,
                     self.holder, now, now),
                )  # fmt: skip
            cur.execute(
                f"UPDATE {leases} SET holder = {mark}, taken_at = {mark} WHERE ti_key = {mark}",
                (self.holder, now, k.task_instance_digest),
            )
            cur.execute(f"SELECT started_at FROM {leases} WHERE ti_key = {mark}", (k.digest,))
            ((started,),) = cur.fetchall()
        with bulk_objects():
            self._earlier = self._read_earlier(conn)
        self.started_at = stored_utc(started)
        first = self._earlier.first_claimed_at
        if first is not None and first < self.started_at.timestamp():  # an earlier version's
            self.started_at = datetime.fromtimestamp(int(first), UTC)
            with closing(conn.cursor()) as cur:
                cur.execute(
                    f"UPDATE {leases} SET started_at = {mark} WHERE ti_key = {mark}",
                    (self.started_at.replace(tzinfo=None).isoformat(sep=" "), k.digest),
                )
        conn.commit()

    def _read_earlier(self, conn: Any) -> EarlierTries:
        """The claims, then the outcomes, of this campaign (and of the task instance's rows an
        earlier version wrote), a block of rows at a time."""
        mark, keys = self._hook.placeholder, (self.key.digest, self.key.task_instance_digest)
        where = f"WHERE ti_key IN ({mark}, {mark})"
        claims = ClaimsReader()
        for rows in _blocks(
            conn,
            f"SELECT text_hash, numbers, claimed_at FROM {self.table}_claims {where} "
            "ORDER BY claimed_at",
            keys,
        ):
            claims.add(rows)
        earlier = claims.finish()
        sql = f"SELECT text_hash, outcome FROM {self.table}_outcomes {where}"
        for rows in _blocks(conn, sql, keys):
            earlier.add_outcomes(rows)
        return earlier

    # -- writing ------------------------------------------------------------------------------

    def claim(self, batch: Batch) -> Batch | None:
        """Record a batch as in flight, committed, before it is sent; return the batch claimed.

        With a frequency cap, the batch returned lacks the numbers the cap refuses (same index
        and text, the others in order; possibly none). Returns None when a newer try of this
        campaign has taken the lease over: that try owns the numbers this one has not claimed.
        """
        if self._lease_lost:
            return None
        if not batch.numbers:
            return batch
        mark, claim_id, now = self._hook.placeholder, uuid.uuid4().hex, utc_now_text()
        lock = (
            f"UPDATE {self.table}_leases SET last_claim_at = {mark} "
            f"WHERE ti_key = {mark} AND holder = {mark}"
        )
        insert = (
            f"INSERT INTO {self.table}_claims (claim_id, ti_key, text_hash, numbers, claimed_at) "
            f"VALUES ({self._marks(5)})"
        )
        k, cap, contacts, tx = self.key, self.frequency_cap, self._contacts, text_hash(batch.text)
        claimed: list[tuple[str, ...]] = []

        def apply(cur: Any) -> None:  # run again alone if its group fails: no state before
            claimed.clear()
            cur.execute(lock, (now, k.digest, self.holder))
            if cur.rowcount != 1:
                raise _LeaseLost
            numbers, at = batch.numbers, contacts.now()
            if cap is not None:  # the lease row, then the cap lock: see storage.caps
                contacts.lock(cur)
                refused = contacts.refused(cur, numbers, k.digest, cap, at)
                numbers = tuple(n for n in numbers if n not in refused)
            if numbers:
                cur.execute(insert, (claim_id, k.digest, tx, codec.encode(numbers), now))
                if cap is not None:  # counted by the next capped claim, which waits for this
                    contacts.add(cur, k.digest, tx, numbers, at)
            claimed.append(numbers)

        try:
            self._writer.submit(apply, wait=True)
        except _LeaseLost:
            self._lease_lost = True
            log.warning(
                "A newer try of this campaign took the send ledger over; this try claims "
                "nothing more and reports its unclaimed numbers as unknown."
            )
            return None
        (numbers,) = claimed
        if not numbers:
            return Batch(batch.index, batch.text, ())
        if cap is None:  # off the send's path: committed with the queued writes (storage.caps)
            at = contacts.now()
            self._writer.submit(
                lambda cur: contacts.add(cur, k.digest, tx, numbers, at), wait=False
            )
        self._claims[(batch.text, numbers)] = claim_id
        return batch if numbers == batch.numbers else Batch(batch.index, batch.text, numbers)

    def record(self, outcome: BatchOutcome) -> None:
        """Record a batch's outcome (queued; committed with the next group). Messages the API
        refused, or that never reached it, stop counting for frequency caps."""
        batch = outcome.batch
        if not batch.numbers:  # a claim the cap refused whole: nothing was claimed
            return
        # A batch's outcome is recorded once: its claim id is not needed after (keeping them
        # all held every number of the campaign in memory, ~70 bytes a number).
        claim_id = self._claims.pop((batch.text, batch.numbers), None)
        digest, tx, contacts = self.key.digest, text_hash(batch.text), self._contacts
        if not outcome.sent:  # never reached the API: forget the claim, a retry sends it
            if claim_id is None:
                return  # claimed by nobody, or by another try: not ours to delete
            sql = f"DELETE FROM {self.table}_claims WHERE claim_id = {self._hook.placeholder}"

            def forget(cur: Any) -> None:
                cur.execute(sql, (claim_id,))
                contacts.free(cur, digest, tx, batch.numbers)

            self._writer.submit(forget, wait=False)
            return
        sql = (
            f"INSERT INTO {self.table}_outcomes (ti_key, text_hash, outcome, recorded_at) "
            f"VALUES ({self._marks(4)})"
        )
        row = (digest, tx, codec.encode_outcome(outcome), utc_now_text())
        refused = [number for number, _, _ in outcome.failed]

        def write(cur: Any) -> None:
            cur.execute(sql, row)
            contacts.free(cur, digest, tx, refused)

        self._writer.submit(write, wait=False)

    def close(self) -> None:
        """Commit everything queued and stop the writer; raises if any write failed."""
        self._writer.close()

    @property
    def write_errors(self) -> list[str]:
        return self._writer.write_errors

    def _marks(self, count: int) -> str:
        return ", ".join([self._hook.placeholder] * count)


def _blocks(conn: Any, sql: str, params: tuple) -> Iterator[list[tuple]]:
    """The rows of a query, ``READ_ROWS`` at a time: through a server-side cursor where the
    driver has one (PostgreSQL's), so neither the client nor the driver holds them all."""
    try:
        cursor = conn.cursor(name=f"voxsms_ledger_{uuid.uuid4().hex[:8]}")
    except TypeError:  # sqlite3 and most drivers: an ordinary cursor steps through the rows
        cursor = conn.cursor()
    with closing(cursor):
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(READ_ROWS):
            yield rows
