"""Frequency caps in the send ledger, on real SQLite and PostgreSQL: the rule (count, window,
whose sends count, what frees a number) and its hold under concurrent claims."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_voxsms.sms.model import Batch, BatchOutcome
from airflow_provider_voxsms.storage.key import CampaignKey
from airflow_provider_voxsms.storage.ledger import SendLedger
from airflow_provider_voxsms.storage.sql import db_api_hook, transactional

DAY = timedelta(hours=24)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NUMBERS = tuple(f"447443{i:06d}" for i in range(10))


def campaign(name: str, run_id: str = "run-1") -> CampaignKey:
    return CampaignKey("dag", name, -1, name, run_id)


class Clock:
    """A settable clock for the cap's windows."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def ledger_conn(voxsms_db) -> str:
    return voxsms_db


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ledger(conn: str, key: CampaignKey, cap=(1, DAY), clock=None) -> SendLedger:
    """A ledger (not open yet) with a cap of one message a day by default."""
    return SendLedger(conn, key, frequency_cap=cap, **({"clock": clock} if clock else {}))


def send(ledger: SendLedger, numbers=NUMBERS, text: str = "hi", index: int = 1) -> Batch | None:
    """Claim a batch and record every claimed number accepted; the batch claimed."""
    claimed = ledger.claim(Batch(index, text, tuple(numbers)))
    if claimed is not None and claimed.numbers:
        accepted = [(n, 1000 + i) for i, n in enumerate(claimed.numbers)]
        ledger.record(BatchOutcome(claimed, accepted=accepted))
    return claimed


def rows(conn: str, sql: str) -> list[tuple]:
    return db_api_hook(conn).get_records(sql)


def test_a_claim_keeps_the_numbers_below_the_cap_in_order(ledger_conn, clock):
    with ledger(ledger_conn, campaign("a"), cap=None, clock=clock) as a:
        send(a, NUMBERS[2:5])
    with ledger(ledger_conn, campaign("b"), cap=None, clock=clock) as b:
        send(b, NUMBERS[3:4])
    with ledger(ledger_conn, campaign("c"), cap=(2, DAY), clock=clock) as c:
        claimed = c.claim(Batch(7, "hello", NUMBERS[:6]))
    assert claimed == Batch(7, "hello", (*NUMBERS[:2], NUMBERS[2], NUMBERS[4], NUMBERS[5])), (
        "only the number two other campaigns reached is refused; the rest keep their order"
    )
    with ledger(ledger_conn, campaign("d"), cap=(1, DAY), clock=clock) as d:
        assert d.claim(Batch(1, "hello", NUMBERS)).numbers == NUMBERS[6:], "c's count too"


def test_the_window_ends_exactly_window_after_the_contact(ledger_conn, clock):
    with ledger(ledger_conn, campaign("a"), clock=clock) as a:
        send(a, NUMBERS[:1])
    clock.now = T0 + DAY
    with ledger(ledger_conn, campaign("b"), clock=clock) as b:
        assert b.claim(Batch(1, "hi", NUMBERS[:1])).numbers == (), "24 h later to the µs: still in"
    clock.now = T0 + DAY + timedelta(microseconds=1)
    with ledger(ledger_conn, campaign("c"), clock=clock) as c:
        assert c.claim(Batch(1, "hi", NUMBERS[:1])).numbers == NUMBERS[:1], "then out"


def test_a_campaign_never_counts_its_own_sends_its_retries_or_other_runs(ledger_conn, clock):
    key = campaign("a")
    with ledger(ledger_conn, key, clock=clock) as first_try:
        send(first_try)
        again = Batch(-1, "hi", NUMBERS[:3])  # a settle round sending some again
        assert first_try.claim(again) == again
    with ledger(ledger_conn, key, clock=clock) as retry:
        assert send(retry, text="other text").numbers == NUMBERS, "a retry or a clear"
    with ledger(ledger_conn, campaign("a", run_id="run-2"), clock=clock) as rerun:
        assert send(rerun).numbers == NUMBERS, "another run of the same campaign"
    with ledger(ledger_conn, campaign("b"), clock=clock) as other:
        assert send(other).numbers == ()


def test_uncapped_campaigns_count_for_capped_ones(ledger_conn, clock):
    with ledger(ledger_conn, campaign("plain"), cap=None, clock=clock) as plain:
        send(plain, NUMBERS[:4])
        send(plain, NUMBERS[:4], text="second notice")
    with ledger(ledger_conn, campaign("capped"), cap=(2, DAY), clock=clock) as capped:
        assert send(capped).numbers == NUMBERS[4:], "two messages from the plain campaign"


def test_a_number_sent_again_after_an_ambiguous_answer_counts_each_send(ledger_conn, clock):
    """A settle round re-sends a number whose first request may never have arrived: the
    ledger cannot tell, so both sends count (to be safe) for caps above one."""
    with ledger(ledger_conn, campaign("a"), cap=None, clock=clock) as a:
        first = a.claim(Batch(1, "hi", NUMBERS[:2]))
        a.record(BatchOutcome(first, unknown=[(n, "timeout") for n in first.numbers]))
        send(a, NUMBERS[:2], index=-1)
    with ledger(ledger_conn, campaign("b"), cap=(3, DAY), clock=clock) as b:
        assert send(b, NUMBERS[:2]).numbers == NUMBERS[:2]
    with ledger(ledger_conn, campaign("c"), cap=(3, DAY), clock=clock) as c:
        assert send(c, NUMBERS[:3]).numbers == NUMBERS[2:3]


@pytest.mark.parametrize("cap_of_a", [(1, DAY), None], ids=["capped", "uncapped"])
def test_refused_or_unsent_messages_free_the_number_and_unknown_ones_do_not(
    ledger_conn, clock, cap_of_a
):
    """An uncapped claim queues its contact rows after it commits: freeing them comes after."""
    n = NUMBERS
    with ledger(ledger_conn, campaign("a"), cap=cap_of_a, clock=clock) as a:
        mixed = a.claim(Batch(1, "hi", n[:4]))
        a.record(
            BatchOutcome(
                mixed,
                accepted=[(n[0], 1)],
                failed=[(n[1], 509, "blocked"), (n[2], 402, "bad number")],
                unknown=[(n[3], "HTTP 500")],
            )
        )
        unsent = a.claim(Batch(2, "hi", n[4:7]))
        a.record(BatchOutcome(unsent, not_sent=[(x, 127, "no money") for x in unsent.numbers]))
        in_flight = a.claim(Batch(3, "hi", n[7:]))  # never answered (the worker died)
    assert in_flight.numbers == n[7:]
    with ledger(ledger_conn, campaign("b"), clock=clock) as b:
        assert send(b).numbers == n[1:3] + n[4:7], "failed and never sent: free"


def test_a_batch_refused_whole_claims_nothing_and_records_nothing(ledger_conn, clock):
    with ledger(ledger_conn, campaign("a"), clock=clock) as a:
        send(a, NUMBERS[:3])
    b_key = campaign("b")
    with ledger(ledger_conn, b_key, clock=clock) as b:
        claimed = b.claim(Batch(4, "hi", NUMBERS[:3]))
        assert claimed == Batch(4, "hi", ())
        b.record(BatchOutcome(claimed))  # as dispatch reports it, with the numbers capped
    for table in ("claims", "outcomes", "contacts"):
        sql = f"SELECT COUNT(*) FROM voxsms_send_ledger_{table} WHERE ti_key = '{b_key.digest}'"
        assert rows(ledger_conn, sql) == [(0,)], table
    with SendLedger(ledger_conn, b_key) as retry:
        assert not retry.has_earlier


def test_a_ledger_made_before_caps_gains_their_tables(ledger_conn, clock):
    with ledger(ledger_conn, campaign("a"), cap=None, clock=clock) as a:
        send(a, NUMBERS[:2])
    hook = db_api_hook(ledger_conn)
    for table in ("voxsms_send_ledger_contacts", "voxsms_send_ledger_cap_lock"):
        hook.run(f"DROP TABLE {table}")
    with ledger(ledger_conn, campaign("b"), clock=clock) as b:
        assert send(b, NUMBERS[:4]).numbers == NUMBERS[:4], "sends before the upgrade: unknown"
    with ledger(ledger_conn, campaign("c"), clock=clock) as c:
        assert send(c, NUMBERS[:5]).numbers == NUMBERS[4:5]
    assert rows(ledger_conn, "SELECT id FROM voxsms_send_ledger_cap_lock") == [(1,)]


def race(conn: str, prefix: str, orders: list[list[str]]) -> dict[str, str]:
    """Capped campaigns (cap 1) claim their lists at the same moment, 50 numbers a batch
    (50 ms apart, for its request);
    each number's winner (every claim is checked against the winners so far)."""
    start, winners, errors = threading.Barrier(len(orders)), {}, []

    def run(name: str, order: list[str]) -> None:
        try:
            with ledger(conn, campaign(name)) as mine:
                start.wait(timeout=30)
                for i in range(0, len(order), 50):
                    for number in send(mine, order[i : i + 50], index=i).numbers:
                        assert winners.setdefault(number, name) == name, f"{number} sent twice"
                    time.sleep(0.05)  # its request
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=run, args=(f"{prefix}-{i}", order))
        for i, order in enumerate(orders)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    return winners


def test_capped_campaigns_claiming_at_once_never_share_a_number(ledger_conn):
    """Four capped campaigns claim the same numbers (in different orders) at the same moment,
    over and over: each number goes to exactly one of them."""
    for round_ in range(5):
        numbers = [f"4474{round_}{i:06d}" for i in range(400)]
        orders = [
            numbers,
            numbers[::-1],
            numbers[200:] + numbers[:200],
            numbers[1::2] + numbers[::2],
        ]
        winners = race(ledger_conn, f"race{round_}", orders)
        assert sorted(winners) == numbers
        assert len(set(winners.values())) > 1, "the campaigns did claim at the same time"
        sql = (
            "SELECT number, COUNT(*) FROM voxsms_send_ledger_contacts "
            f"WHERE number LIKE '4474{round_}%' GROUP BY number HAVING COUNT(*) > 1"
        )
        assert rows(ledger_conn, sql) == []


def test_uncapped_claims_never_wait_for_a_capped_claim(ledger_conn, request):
    """A capped claim in progress (the cap lock held) holds up the next capped claim only."""
    if "sqlite" in request.node.callspec.id:
        pytest.skip("SQLite serialises writers by design; parallel writers are a PostgreSQL case")
    capped = ledger(ledger_conn, campaign("capped")).open()
    plain = ledger(ledger_conn, campaign("plain"), cap=None).open()
    hook = db_api_hook(ledger_conn)
    with transactional(hook) as stalled:  # another capped claim, mid-transaction, frozen
        stalled.cursor().execute("UPDATE voxsms_send_ledger_cap_lock SET locked_at = NULL")
        done: list[str] = []
        steps = [
            threading.Thread(target=lambda: done.append(send(plain) and "plain")),
            threading.Thread(target=lambda: done.append(send(capped, NUMBERS[::-1]) and "capped")),
        ]
        for t in steps:
            t.start()
        steps[0].join(timeout=5)
        time.sleep(0.5)
        assert done == ["plain"], "the uncapped claim went on; the capped one waits"
        stalled.rollback()
    steps[1].join(timeout=10)
    capped.close(), plain.close()
    assert done == ["plain", "capped"]


def test_takeovers_amid_capped_claims_never_deadlock(ledger_conn):
    """Capped and uncapped campaigns claim while newer tries of them take their leases over:
    every claim ends (claimed or lease lost) and no transaction is chosen as a deadlock victim."""
    errors: list[BaseException] = []
    stop = time.monotonic() + 6

    def claimer(name: str, cap) -> None:
        try:
            while time.monotonic() < stop:
                with ledger(ledger_conn, campaign(name), cap=cap) as mine:
                    for i in range(0, 200, 20):
                        if send(mine, [f"44744{n:07d}" for n in range(i, i + 20)], index=i) is None:
                            break  # a newer try took the lease over
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=claimer, args=(name, cap))
        for name, cap in [
            ("a", (1, DAY)),
            ("a", (1, DAY)),
            ("b", (3, DAY)),
            ("b", (3, DAY)),
            ("c", None),
            ("c", None),
        ]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)


def test_a_claim_on_sqlite_waits_longer_than_five_seconds_for_another_writer(ledger_conn, request):
    """sqlite3 gives up on a locked file after 5 s; a campaign sharing the ledger file with
    busy ones waits its turn instead (storage.sql.SQLITE_BUSY_TIMEOUT_S)."""
    if "sqlite" not in request.node.callspec.id:
        pytest.skip("PostgreSQL waits for row locks without a timeout")
    mine = ledger(ledger_conn, campaign("patient")).open()
    hook = db_api_hook(ledger_conn)
    with transactional(hook) as other:  # another campaign's writer, in a long transaction
        other.cursor().execute("UPDATE voxsms_send_ledger_cap_lock SET locked_at = NULL")
        waiting = threading.Thread(target=lambda: send(mine))
        waiting.start()
        waiting.join(timeout=6)
        assert waiting.is_alive(), "the claim waits for the lock"
        other.rollback()
    waiting.join(timeout=10)
    mine.close()
    with SendLedger(ledger_conn, campaign("patient")) as retry:
        assert retry.claimed_earlier == len(NUMBERS), "and claims once the lock is free"


def test_contacts_are_looked_up_by_index_even_before_postgresql_analyses_them(ledger_conn, request):
    """A new ledger's contacts have no statistics until autovacuum's first ANALYZE: the count
    and the deletes of refused messages must still be planned as index look-ups (no
    sequential scan, no JIT compilation)."""
    if "postgres" not in request.node.callspec.id:
        pytest.skip("a PostgreSQL planner case")
    from airflow_provider_voxsms.storage.caps import Contacts, FrequencyCap

    with ledger(ledger_conn, campaign("a")):
        pass
    hook = db_api_hook(ledger_conn)
    hook.run("ALTER TABLE voxsms_send_ledger_contacts SET (autovacuum_enabled = false)")
    hook.run(
        "INSERT INTO voxsms_send_ledger_contacts SELECT lpad(g::text, 12, '0'), "
        "lpad((g % 50)::text, 32, '0'), 'hhhhhhhhhhhhhhhh', TIMESTAMP '2026-03-01' "
        "FROM generate_series(1, 1000000) g"
    )

    class Explaining:
        """A cursor that EXPLAINs the statement instead of running it."""

        def __init__(self, cur):
            self.cur, self.plan = cur, []

        def execute(self, sql, params):
            self.cur.execute("EXPLAIN " + sql, params)
            self.plan = [row[0] for row in self.cur.fetchall()]

        def executemany(self, sql, rows):
            self.execute(sql, rows[0])

        def fetchall(self):
            return []

    contacts = Contacts("voxsms_send_ledger", hook.placeholder)
    numbers = [f"{i:012d}" for i in range(1000, 1100)]  # a batch
    with transactional(hook) as conn:
        counting, freeing = Explaining(conn.cursor()), Explaining(conn.cursor())
        contacts.refused(counting, numbers, "x" * 32, FrequencyCap(2, DAY), T0)
        contacts.free(freeing, "x" * 32, "h" * 16, numbers)
    for plan in ("\n".join(counting.plan), "\n".join(freeing.plan)):
        assert "Index" in plan and "Seq Scan" not in plan and "JIT" not in plan, plan
