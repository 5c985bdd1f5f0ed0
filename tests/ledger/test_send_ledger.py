"""SendLedger on real SQLite and PostgreSQL: claims, outcomes, conflicts, parallel writers."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest

from airflow_provider_voxsms.errors import LedgerError
from airflow_provider_voxsms.sms.model import Batch, BatchOutcome, text_hash
from airflow_provider_voxsms.storage.key import CampaignKey
from airflow_provider_voxsms.storage.ledger import SendLedger

KEY = CampaignKey("dag", "send", -1, "2026-01-05T00:00:00+00:00", "run-1")


def key(run_id: str = "run-1", map_index: int = -1, campaign_id: str | None = None):
    """A campaign of task dag/send: by default one per run (as a run without a logical date)."""
    return CampaignKey("dag", "send", map_index, campaign_id or run_id, run_id)


@pytest.fixture
def ledger_conn(voxsms_db) -> str:
    return voxsms_db


def batch(index: int, size: int = 3, text: str = "hi") -> Batch:
    return Batch(index, text, tuple(f"4474433{index:03d}{j:03d}" for j in range(size)))


def rows_by_status(frame) -> dict[str, set[str]]:
    return {s: set(frame.loc[frame.status == s, "destination_number"]) for s in set(frame.status)}


def known(ledger: SendLedger, batches: list[Batch], text: str = "hi") -> pd.DataFrame:
    """What the open ledger knows of the numbers of ``batches`` (sent with ``text``)."""
    numbers = [n for b in batches for n in b.numbers]
    return ledger.earlier(pd.DataFrame({"phone": numbers, "text": text}))


def test_claims_and_outcomes_round_trip(ledger_conn):
    ledger = SendLedger(ledger_conn, KEY)
    assert not ledger.open().has_earlier
    first, second, third = batch(1), batch(2), batch(3)
    assert ledger.claim(first) and ledger.claim(second) and ledger.claim(third)
    n = first.numbers
    ledger.record(
        BatchOutcome(first, accepted=[(n[0], 11), (n[1], 12)], failed=[(n[2], 509, "blocked")])
    )
    ledger.record(BatchOutcome(second, not_sent=[(x, 127, "no money") for x in second.numbers]))
    ledger.close()

    again = SendLedger(ledger_conn, KEY).open()
    previous = known(again, [first, second, third])
    again.close()
    assert rows_by_status(previous) == {
        "accepted": {n[0], n[1]},
        "failed": {n[2]},
        "in_flight": set(third.numbers),
    }, "an unsent batch's rows are deleted, so a retry sends them"
    accepted = previous.set_index("destination_number").loc[n[0]]
    assert accepted.message_id == 11 and accepted.text_hash == text_hash("hi")
    failed = previous.set_index("destination_number").loc[n[2]]
    assert (failed.error_code, failed.error_description) == (509, "blocked"), "kept for retries"
    assert previous.claimed_at.notna().all()


def test_a_try_forgets_each_claim_once_its_outcome_is_recorded(ledger_conn):
    """What the ledger holds in memory stays flat however long the campaign: a claim's id is
    kept only until its batch's outcome is recorded (sent or not)."""
    ledger = SendLedger(ledger_conn, KEY)
    ledger.open()
    for index in range(1, 30):
        claimed = batch(index)
        assert ledger.claim(claimed)
        numbers = claimed.numbers
        sent = index % 3
        ledger.record(
            BatchOutcome(claimed, accepted=[(n, index) for n in numbers])
            if sent
            else BatchOutcome(claimed, not_sent=[(n, 127, "no money") for n in numbers])
        )
    ledger.close()
    assert ledger._claims == {}


def test_a_number_claimed_again_in_a_settle_round_has_one_row_with_its_best_outcome(ledger_conn):
    """An ambiguous batch (unknown), then the same numbers sent again and accepted: a retry
    sees one accepted row per number, dated from the first claim."""
    first = batch(1)
    with SendLedger(ledger_conn, KEY) as ledger:
        assert ledger.claim(first)
        ledger.record(BatchOutcome(first, unknown=[(x, "reset") for x in first.numbers]))
        time.sleep(1.1)  # claim times have a resolution of a second
        again = Batch(-1, first.text, first.numbers[:2])
        assert ledger.claim(again)
        ledger.record(
            BatchOutcome(again, accepted=[(x, 70 + i) for i, x in enumerate(again.numbers)])
        )
    with SendLedger(ledger_conn, KEY) as retry:
        previous = known(retry, [first])
    assert len(previous) == len(first.numbers), "one row per number"
    assert rows_by_status(previous) == {
        "accepted": set(first.numbers[:2]),
        "unknown": {first.numbers[2]},
    }
    assert previous.claimed_at.nunique() == 1, "the first claim's time"


def test_the_newest_try_takes_the_lease_over(ledger_conn):
    older, newer = SendLedger(ledger_conn, KEY), SendLedger(ledger_conn, KEY)
    older.open()
    assert older.claim(batch(1))
    assert set(known(newer.open(), [batch(1), batch(2)]).destination_number) == set(
        batch(1).numbers
    )
    assert not older.claim(batch(2)), "the older try lost its lease and claims nothing more"
    assert not older.claim(batch(3))
    assert newer.claim(batch(2))
    older.close(), newer.close()
    assert set(
        known(SendLedger(ledger_conn, KEY).open(), [batch(i) for i in (1, 2, 3)]).destination_number
    ) == {
        *batch(1).numbers,
        *batch(2).numbers,
    }


def test_a_takeover_sees_every_claim_the_older_try_made(ledger_conn):
    """Race a takeover against a try claiming as fast as it can: every claim the older try was
    told succeeded must be in what the newer try read, or both would send those numbers."""
    for round_ in range(8):
        race = key(f"race-{round_}")
        older, newer = SendLedger(ledger_conn, race), SendLedger(ledger_conn, race)
        older.open()
        claimed: list[Batch] = []
        started = threading.Event()

        def claim_until_lost(older=older, claimed=claimed, started=started) -> None:
            for i in range(10_000):
                if not older.claim(batch(i)):
                    return
                claimed.append(batch(i))
                started.set()

        claimer = threading.Thread(target=claim_until_lost)
        claimer.start()
        started.wait(timeout=30)
        seen = set(known(newer.open(), [batch(i) for i in range(10_000)]).destination_number)
        claimer.join(timeout=60)
        older.close(), newer.close()
        assert claimed and not claimer.is_alive()
        told_claimed = {n for b in claimed for n in b.numbers}
        assert told_claimed <= seen, f"round {round_}: {len(told_claimed - seen)} numbers lost"


def test_a_group_of_claims_queued_behind_a_takeover_claims_nothing(ledger_conn):
    """Claims queued while the writer waits for the lease row share the next commit; when a
    takeover holds the row and commits first, the whole group must fail, each claim None."""
    from airflow_provider_voxsms.storage.sql import db_api_hook, transactional

    queued_group = key("queued-group")
    older = SendLedger(ledger_conn, queued_group)
    older.open()
    told: dict[int, bool] = {}

    def claim(i: int) -> None:
        told[i] = older.claim(batch(i))

    hook = db_api_hook(ledger_conn)
    with transactional(hook) as takeover:  # what a newer try's open() does, held open
        takeover.cursor().execute(
            f"UPDATE voxsms_send_ledger_leases SET holder = {hook.placeholder} "
            f"WHERE ti_key = {hook.placeholder}",
            ("newer-try".ljust(32, "0"), queued_group.digest),
        )
        first = threading.Thread(target=claim, args=(0,))
        first.start()
        time.sleep(0.3)  # the writer waits for the lease row with claim 0
        queued = [threading.Thread(target=claim, args=(i,)) for i in range(1, 9)]
        for t in queued:
            t.start()
        time.sleep(0.3)  # claims 1-8 queue up behind it: the next group
        takeover.commit()
    for t in [first, *queued]:
        t.join(timeout=30)
    older.close()
    assert told == dict.fromkeys(range(9))
    assert not SendLedger(ledger_conn, queued_group).open().has_earlier, "nothing was claimed"


def test_tries_opening_at_once_leave_exactly_one_lease_holder(ledger_conn):
    """The first open of a task instance inserts its lease row; tries racing to insert it
    must all open, and exactly one of them may claim."""
    for round_ in range(10):
        tries = [SendLedger(ledger_conn, key(f"first-open-{round_}")) for _ in range(6)]
        gate, errors = threading.Barrier(len(tries)), []

        def open_at_once(ledger: SendLedger, gate=gate, errors=errors) -> None:
            gate.wait()
            try:
                ledger.open()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=open_at_once, args=(t,)) for t in tries]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == [], f"round {round_}"
        holders = [i for i, ledger in enumerate(tries) if ledger.claim(batch(i))]
        for ledger in tries:
            ledger.close()
        assert len(holders) == 1, f"round {round_}"


def test_another_run_is_another_campaign(ledger_conn):
    ledger = SendLedger(ledger_conn, key("run-1"))
    ledger.open()
    ledger.claim(batch(1))
    ledger.close()
    next_run = SendLedger(ledger_conn, key("run-2"))
    assert not next_run.open().has_earlier
    assert next_run.claim(batch(1))
    next_run.close()


def test_parallel_mapped_instances_do_not_block_or_corrupt_each_other(ledger_conn, request):
    if "sqlite" in request.node.callspec.id:  # the voxsms_db fixture's parameter
        pytest.skip("SQLite serialises writers by design; parallel writers are a PostgreSQL case")
    errors: list[BaseException] = []

    def shard(map_index: int) -> None:
        try:
            ledger = SendLedger(ledger_conn, key(map_index=map_index))
            ledger.open()
            for i in range(40):
                b = batch(i, size=100)
                assert ledger.claim(b)
                ledger.record(BatchOutcome(b, accepted=[(x, i) for x in b.numbers]))
            ledger.close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=shard, args=(m,)) for m in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    for map_index in range(6):
        ledger = SendLedger(ledger_conn, key(map_index=map_index)).open()
        rows = known(ledger, [batch(i, size=100) for i in range(40)])
        ledger.close()
        assert len(rows) == 4000 and set(rows.status) == {"accepted"}


def test_an_instance_never_waits_for_another_instances_open_transaction(ledger_conn, request):
    """On PostgreSQL a mapped instance opening or claiming must not wait for another one's
    uncommitted writes (``CREATE INDEX IF NOT EXISTS`` would: it locks the whole table)."""
    if "sqlite" in request.node.callspec.id:
        pytest.skip("SQLite serialises writers by design; parallel writers are a PostgreSQL case")
    from airflow_provider_voxsms.storage.sql import db_api_hook, transactional

    running = SendLedger(ledger_conn, key(map_index=3))
    running.open()
    other = SendLedger(ledger_conn, key(map_index=1))
    other.open()
    other.close()
    hook = db_api_hook(ledger_conn)
    with transactional(hook) as stalled:  # instance 1's writer, mid-transaction, frozen
        cur = stalled.cursor()
        cur.execute(
            f"INSERT INTO voxsms_send_ledger_claims VALUES ({', '.join([hook.placeholder] * 5)})",
            ("c" * 32, other.key.digest, "h" * 16, "[]", "2026-01-01 00:00:00"),
        )
        cur.execute(
            f"INSERT INTO voxsms_send_ledger_outcomes VALUES ({', '.join([hook.placeholder] * 4)})",
            (other.key.digest, "h" * 16, "{}", "2026-01-01 00:00:00"),
        )
        done: list[str] = []
        starting = SendLedger(ledger_conn, key(map_index=2))
        steps = [
            threading.Thread(target=lambda: done.append(starting.open() is not None and "open")),
            threading.Thread(target=lambda: done.append(running.claim(batch(1)) and "claim")),
        ]
        for t in steps:
            t.start()
        for t in steps:
            t.join(timeout=5)
        stalled.rollback()
    running.close(), starting.close()
    assert sorted(done) == ["claim", "open"]


def test_unreachable_database_fails_before_anything_is_sent(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", "postgresql://nobody@127.0.0.1:9/none")
    ledger = SendLedger("ledger_db", KEY)
    with pytest.raises(LedgerError, match=r"(?s)unavailable .* Nothing was sent") as caught:
        ledger.open()
    assert caught.value.__cause__ is None


def test_bad_table_name_is_refused():
    with pytest.raises(ValueError, match="plain identifier"):
        SendLedger("ledger_db", KEY, table="ledger; DROP TABLE x")


def test_a_stopped_try_never_deletes_another_tries_claims(ledger_conn):
    """A try that stops before a batch reports it not sent; the claims of that batch may belong
    to a concurrent try that did send it, and must survive."""
    try_a, try_b = SendLedger(ledger_conn, KEY), SendLedger(ledger_conn, KEY)
    try_a.open(), try_b.open()
    shared = batch(5)
    assert try_b.claim(shared)
    try_b.record(BatchOutcome(shared, accepted=[(n, 50) for n in shared.numbers]))
    try_a.record(BatchOutcome(shared, not_sent=[(n, 127, "stop") for n in shared.numbers]))
    try_a.close(), try_b.close()
    third = SendLedger(ledger_conn, KEY).open()
    previous = known(third, [shared])
    third.close()
    assert rows_by_status(previous) == {"accepted": set(shared.numbers)}


class DeadConnection:
    """A writer connection the server has dropped: nothing works, not even a rollback."""

    def cursor(self):
        raise ConnectionError("server closed the connection")

    def rollback(self):
        raise ConnectionError("connection already closed")

    def commit(self):
        raise ConnectionError("connection already closed")


class DyingConnection(DeadConnection):
    """Dropped just after a claim's lease check found no lease."""

    class NoLeaseCursor:
        rowcount = 0

        def execute(self, *args):
            pass

        def close(self):
            pass

    def cursor(self):
        return self.NoLeaseCursor()


def open_with_writer_connection(ledger_conn, monkeypatch, connection) -> SendLedger:
    """Open a ledger through a real connection, then give its writer ``connection``."""
    from contextlib import nullcontext

    import airflow_provider_voxsms.storage.writer as writer_module

    monkeypatch.setattr(writer_module, "transactional", lambda hook: nullcontext(connection))
    ledger = SendLedger(ledger_conn, KEY)
    ledger.open()
    return ledger


def test_a_dead_connection_fails_claims_instead_of_hanging(ledger_conn, monkeypatch):
    """If the writer's connection dies (even rollback fails), waiting claims get an error."""
    ledger = open_with_writer_connection(ledger_conn, monkeypatch, DeadConnection())
    outcome: list = []
    claimer = threading.Thread(target=lambda: outcome.append(_claim_or_error(ledger, batch(1))))
    claimer.start()
    claimer.join(timeout=10)
    assert not claimer.is_alive(), "the claim hung"
    assert isinstance(outcome[0], LedgerError)
    with pytest.raises(LedgerError, match="write"):
        ledger.close()


def test_a_dead_connection_after_a_lost_lease_stops_the_run(ledger_conn, monkeypatch):
    """A claim finding no lease and then failing to roll back is a dead connection, not a
    lost lease: the sender gets an error (the run stops) instead of False (carry on)."""
    ledger = open_with_writer_connection(ledger_conn, monkeypatch, DyingConnection())
    with pytest.raises(LedgerError, match="connection already closed"):
        ledger.claim(batch(1))
    with pytest.raises(LedgerError, match="ConnectionError"):
        ledger.close()


def _claim_or_error(ledger: SendLedger, b: Batch):
    try:
        return ledger.claim(b)
    except LedgerError as err:
        return err


def test_outcomes_written_as_rows_by_earlier_builds_are_still_read():
    """Outcome JSON was a list of rows per status before it became columns (version 2)."""
    from airflow_provider_voxsms.storage.earlier import ClaimsReader

    def _previous(claims, outcomes):
        claimed = ClaimsReader()
        claimed.add(claims)
        index = claimed.finish()
        index.add_outcomes(outcomes)
        rows = pd.DataFrame({"phone": ["447400000001", "447400000002"], "text": "hi"})
        return index.of(rows).set_index("destination_number")  # looked up by number below

    tx = text_hash("hi")
    claims = [(tx, '["447400000001", "447400000002"]', "2026-12-01 10:00:00")]
    rows = '{"accepted": [["447400000001", 11]], "failed": [["447400000002", 509, "blocked"]]}'
    columns = '{"v": 2, "accepted": [["447400000001"], [11]]}'
    for outcome in (rows, columns):
        previous = _previous(claims, [(tx, outcome)])  # one text: keyed by the number
        assert previous.loc["447400000001", "message_id"] == 11
    previous = _previous(claims, [(tx, rows)])
    assert previous.loc["447400000002", "error_description"] == "blocked"


# -- campaigns: keyed by campaign_id, not by DAG run --------------------------------------------


def test_runs_of_one_campaign_share_the_ledger_and_another_campaign_does_not(ledger_conn):
    """A second run for the same interval (a backfill, a run triggered again) resumes the
    campaign: it sees what the first run settled and left open; the next interval sees none."""
    first, second = batch(1), batch(2)
    with SendLedger(ledger_conn, key("scheduled__2026-01-05", campaign_id="2026-01-05")) as run:
        assert run.claim(first) and run.claim(second)
        run.record(BatchOutcome(first, accepted=[(n, 7) for n in first.numbers]))
    again = SendLedger(ledger_conn, key("backfill__2026-01-05", campaign_id="2026-01-05")).open()
    assert rows_by_status(known(again, [first, second])) == {
        "accepted": set(first.numbers),
        "in_flight": set(second.numbers),
    }
    assert (again.claimed_earlier, again.settled_earlier, again.open_earlier) == (6, 3, 3)
    again.close()
    next_day = SendLedger(ledger_conn, key("scheduled__2026-01-06", campaign_id="2026-01-06"))
    assert not next_day.open().has_earlier
    next_day.close()


def test_a_run_of_the_campaign_takes_the_lease_from_another_run_still_sending(ledger_conn):
    older = SendLedger(ledger_conn, key("manual__1", campaign_id="2026-01-05")).open()
    assert older.claim(batch(1))
    newer = SendLedger(ledger_conn, key("manual__2", campaign_id="2026-01-05")).open()
    assert not older.claim(batch(2)), "one campaign, one holder"
    assert set(known(newer, [batch(1)]).destination_number) == set(batch(1).numbers)
    older.close(), newer.close()


def test_the_campaigns_first_start_is_kept_across_tries(ledger_conn):
    with SendLedger(ledger_conn, KEY) as first:
        started = first.started_at
        assert started.tzinfo is not None
        assert abs((datetime.now(UTC) - started).total_seconds()) < 5
    time.sleep(1.1)  # the tables keep seconds
    with SendLedger(ledger_conn, replace(KEY, run_id="run-2")) as retry:
        assert retry.started_at == started
    with SendLedger(ledger_conn, replace(KEY, campaign_id="next")) as other:
        assert other.started_at > started


# The ledger's DDL before campaigns: rows keyed by a digest of the task instance.
OLD_LEDGER = (
    """CREATE TABLE voxsms_send_ledger_claims (claim_id CHAR(32) NOT NULL PRIMARY KEY,
    ti_key CHAR(32) NOT NULL, text_hash CHAR(16) NOT NULL, numbers TEXT NOT NULL,
    claimed_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX ix_voxsms_send_ledger_claims_key ON voxsms_send_ledger_claims (ti_key)",
    """CREATE TABLE voxsms_send_ledger_outcomes (ti_key CHAR(32) NOT NULL,
    text_hash CHAR(16) NOT NULL, outcome TEXT NOT NULL, recorded_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX ix_voxsms_send_ledger_outcomes_key ON voxsms_send_ledger_outcomes (ti_key)",
    """CREATE TABLE voxsms_send_ledger_leases (ti_key CHAR(32) NOT NULL PRIMARY KEY,
    dag_id VARCHAR(250) NOT NULL, run_id VARCHAR(250) NOT NULL, task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL, holder CHAR(32) NOT NULL, taken_at TIMESTAMP NOT NULL,
    last_claim_at TIMESTAMP)""",
)


def old_digest(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """``TaskInstanceKey.digest`` as earlier versions computed it."""
    raw = "\x1f".join((dag_id, run_id, task_id, str(map_index)))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def test_a_ledger_written_by_an_earlier_version_is_migrated_and_resumed(ledger_conn):
    """Tables made before campaigns get the new columns; a try of the same task instance
    resumes from the rows earlier tries wrote under the task instance's key, takes their lease
    (an older build's try still running claims nothing more), and writes under the campaign."""
    from airflow_provider_voxsms.storage.sql import db_api_hook

    hook, old = db_api_hook(ledger_conn), old_digest("dag", "run-1", "send", -1)
    for statement in OLD_LEDGER:
        hook.run(statement)
    first, second = batch(1), batch(2)
    hook.insert_rows(
        "voxsms_send_ledger_leases",
        [(old, "dag", "run-1", "send", -1, "o" * 32, "2026-01-05 09:00:00")],
        ["ti_key", "dag_id", "run_id", "task_id", "map_index", "holder", "taken_at"],
    )
    hook.insert_rows(
        "voxsms_send_ledger_claims",
        [
            ("a" * 32, old, text_hash("hi"), json.dumps(first.numbers), "2026-01-04 09:00:00"),
            ("b" * 32, old, text_hash("hi"), json.dumps(second.numbers), "2026-01-04 09:00:01"),
        ],
    )
    rows = [[n, 40 + i] for i, n in enumerate(first.numbers)]  # the old row format
    outcome = json.dumps({"accepted": rows[:2], "failed": [[first.numbers[2], 509, "blocked"]]})
    hook.insert_rows(
        "voxsms_send_ledger_outcomes", [(old, text_hash("hi"), outcome, "2026-01-04 09:00:02")]
    )

    upgraded = SendLedger(ledger_conn, KEY).open()  # KEY: dag/send/-1 in run-1
    assert rows_by_status(known(upgraded, [first, second])) == {
        "accepted": set(first.numbers[:2]),
        "failed": {first.numbers[2]},
        "in_flight": set(second.numbers),
    }
    assert upgraded.started_at == datetime(2026, 1, 4, 9, 0, tzinfo=UTC), "the first claim"
    (holder,) = hook.get_first(
        f"SELECT holder FROM voxsms_send_ledger_leases WHERE ti_key = '{old}'"
    )
    assert holder == upgraded.holder, "the older build's try lost its lease"
    assert upgraded.claim(batch(3))
    upgraded.close()
    written = hook.get_records(
        "SELECT ti_key FROM voxsms_send_ledger_claims WHERE claimed_at > '2026-01-05'"
    )
    assert [row[0] for row in written] == [KEY.digest], "new rows under the campaign's key"
    leases = hook.get_records("SELECT campaign_id, started_at FROM voxsms_send_ledger_leases")
    assert {row[0] for row in leases} == {KEY.campaign_id, None}, "the old lease: no campaign"

    with SendLedger(ledger_conn, KEY) as retry:
        assert retry.claimed_earlier == 9 and retry.settled_earlier == 3
        assert retry.started_at == upgraded.started_at
