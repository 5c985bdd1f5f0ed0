"""The sharded example campaign on a real Celery cluster: a worker killed mid-shard, and eight
delivery reports deferred to one triggerer.

200,000 recipients from PostgreSQL go through ``voxsms_sharded_campaign`` (Parquet shards,
mapped sends with the ledger and the results table, delivery reports deferred to the
triggerer) on two Celery workers. While a send shard is sending, the worker running it is
SIGKILLed with its whole process tree, as when its machine dies. The scheduler notices the
missing heartbeats and retries the shard on the other worker, which resumes from the ledger.

What must hold, counted exactly from how the recipients are made (`RECIPIENTS`): the run
succeeds; every valid distinct number reached the emulator exactly once, none twice and none
missing; each killed shard ran twice and its second try resumed what the first had settled;
every accepted message has a final delivery status; the results table holds one outcome per
input row, and the outcomes agree with the summaries.

Then 100,000 recipients over 8 shards, each shard's delivery report deferred: eight triggers in
one triggerer, polling together, give one DELIVERED row per message.

Neither run may hold the triggerer's event loop: its log must have no "async thread was
blocked" warning (the watchdog's threshold is 0.2 s), since every deferred task of a deployment
waits while a trigger holds the loop.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import psycopg2
import pytest

if TYPE_CHECKING:  # the test gets the cluster as a fixture; this is for the annotations only
    from conftest import Cluster, Component, KilledWorker

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

DAG_ID = "voxsms_sharded_campaign"
SHARDS = 4
SEND_LATENCY_MS = 4000  # per request until the kill: 16 in flight, ~4 batches/s per shard
DELIVERY_QUEUED_S = 45  # the retried shard's last messages are usually still queued when the
# delivery trigger first looks, so it polls again; every message is final within a minute
MID_SEND_BATCHES = 350  # the kill lands while the target has claimed fewer batches (of ~490)
RUN_TIMEOUT_S = 420


@dataclass(frozen=True)
class Recipients:
    """The seeded rows, and what the campaign must make of them.

    * ``unique`` distinct valid GB mobile numbers, 447700000000 + i, in E.164 digits;
    * a copy of every ``duplicate_every``-th of them written nationally (07700 ...), after all the others (so
      ``split`` reads it in another chunk and writes it to another Parquet part of the shard
      than its original): a duplicate, never sent;
    * ``invalid`` rows that are no phone number (17 digits, or words): never sent;
    * every ``blocked_every``-th number is refused by the emulator (code 509): outcome failed.

    Numbers ending in 7 end FAILED on delivery (the emulator's ``delivery_by_last_digit``).
    """

    unique: int = 196_000
    duplicate_every: int = 50
    invalid: int = 80
    blocked_every: int = 9_800

    @cached_property
    def numbers(self) -> list[str]:
        return [str(447700000000 + i) for i in range(self.unique)]

    @cached_property
    def rows(self) -> list[str]:
        copies = ["0" + number[2:] for number in self.numbers[:: self.duplicate_every]]
        half = self.invalid // 2
        invalid = [f"4477{i:013d}" for i in range(half)] + [
            f"call me {i}" for i in range(self.invalid - half)
        ]
        return self.numbers + copies + invalid

    @property
    def duplicates(self) -> int:
        return len(self.rows) - self.unique - self.invalid

    @cached_property
    def blocked(self) -> list[str]:
        return self.numbers[123 :: self.blocked_every]

    @cached_property
    def accepted(self) -> set[str]:
        return set(self.numbers) - set(self.blocked)

    @property
    def failed_on_delivery(self) -> int:
        return sum(number.endswith("7") for number in self.accepted)


RECIPIENTS = Recipients()


def test_sharded_campaign_survives_a_killed_worker(cluster: Cluster, tmp_path) -> None:
    """Seed, trigger, kill the worker of a shard mid-send, then check every count (module
    docstring). The emulator is slow (`SEND_LATENCY_MS`) only until the kill, so that the kill
    surely lands mid-shard and the rest of the run takes no longer than it must."""
    started = time.monotonic()
    triggerer_log = cluster.log_size("triggerer")
    assert len(RECIPIENTS.rows) == 200_000
    _seed(cluster, RECIPIENTS.rows)
    _log(started, "recipients seeded")
    cluster.emulator(
        "faults",
        {
            "latency_ms": SEND_LATENCY_MS,
            "blocked_numbers": RECIPIENTS.blocked,
            "delivery_queued_s": DELIVERY_QUEUED_S,
            "delivery_by_last_digit": "7=FAILED",
        },
    )
    run_id = _trigger(cluster, shards=SHARDS, shards_path=f"file://{tmp_path / 'shards'}")
    _log(started, f"triggered {run_id}")

    # The kill: a shard with answered batches in the ledger and most of its batches to go.
    polls: list[str] = []  # what the watch saw, for the message when no kill is possible
    target = cluster.wait(
        lambda: _shard_mid_send(cluster, run_id, polls), "a send shard mid-send", 240
    )
    running = cluster.task_instances(DAG_ID, run_id, "send")
    killed = cluster.kill_worker_running(DAG_ID, run_id, "send", target)
    cluster.emulator("faults", {"latency_ms": 0})  # the rest as fast as the machine goes
    # Every shard the worker was running died with it (the target among them).
    on_killed_worker = {
        ti["map_index"] for ti in running if ti["state"] == "running" and ti["pid"] in killed.pids
    }
    _log(started, f"killed {killed}, running send shards {sorted(on_killed_worker)}")
    assert target in on_killed_worker
    survivor = next(w for w in cluster.workers if w.name != killed.name)
    assert survivor.proc.poll() is None

    retried_on_survivor: set[int] = set()
    run = cluster.wait(
        lambda: _finished(cluster, run_id, survivor, retried_on_survivor),
        f"run {run_id} finished",
        RUN_TIMEOUT_S,
        2,
    )
    _log(started, f"run {run['state']}: {_states(cluster, run_id)}")
    assert run["state"] == "success", _states(cluster, run_id)

    sends = {ti["map_index"]: ti for ti in cluster.task_instances(DAG_ID, run_id, "send")}
    summaries = {m: cluster.return_value(DAG_ID, run_id, "send", m) for m in sends}
    _assert_killed_shards_retried(
        sends, summaries, target, on_killed_worker, retried_on_survivor, killed
    )
    _assert_each_number_sent_once(cluster)
    _assert_outcomes_match_summaries(cluster, run_id, summaries)
    _assert_delivery_reports_complete(cluster, run_id, len(sends))
    _assert_triggerer_never_blocked(cluster, triggerer_log)


EIGHT_SHARDS = 8
DELIVERED_AFTER_S = 40  # queued that long: each trigger polls a few rounds, all eight together


def test_eight_deferred_delivery_reports_share_one_triggerer(cluster: Cluster) -> None:
    """100,000 distinct numbers over 8 shards, every delivery report deferred: one DELIVERED row
    per message in sms_delivery_status, each report's wait done in the triggerer, and the
    triggerer's loop never held."""
    started = time.monotonic()
    triggerer_log = cluster.log_size("triggerer")
    numbers = [str(447800000000 + i) for i in range(100_000)]
    _seed(cluster, numbers)
    cluster.emulator("reset", {})
    cluster.emulator("faults", {"delivery_queued_s": DELIVERED_AFTER_S})
    run_id = _trigger(cluster, shards=EIGHT_SHARDS)
    _log(started, f"triggered {run_id}")
    deferred: set[int] = set()

    def finished() -> dict | None:
        for ti in cluster.task_instances(DAG_ID, run_id, "delivery"):
            if ti["state"] == "deferred":
                deferred.add(ti["map_index"])
        run = cluster.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = cluster.wait(finished, f"run {run_id} finished", RUN_TIMEOUT_S, 2)
    _log(
        started, f"run {run['state']}: {_states(cluster, run_id)}; seen deferred {sorted(deferred)}"
    )
    assert run["state"] == "success", _states(cluster, run_id)
    assert len(deferred) > 1, "the reports waited in the triggerer together"

    rows = cluster.sql(
        "SELECT delivery_status, count(*), count(DISTINCT destination_number), count(DISTINCT"
        " message_id), count(DISTINCT map_index) FROM sms_delivery_status"
        " WHERE dag_id = %s AND run_id = %s GROUP BY delivery_status",
        (DAG_ID, run_id),
    )
    assert rows == [("DELIVERED", 100_000, 100_000, 100_000, EIGHT_SHARDS)], rows
    sent = Counter(m["destination_number"] for m in cluster.emulator("messages"))
    assert set(sent) == set(numbers) and set(sent.values()) == {1}
    for map_index in range(EIGHT_SHARDS):
        log = cluster.task_log(DAG_ID, run_id, "delivery", map_index)
        assert "Trigger ended (done)" in log, log[-3000:]
    report = cluster.return_value(DAG_ID, run_id, "report")
    assert (report["shards"], report["delivered"], report["pending"]) == (8, 100_000, 0), report
    _assert_triggerer_never_blocked(cluster, triggerer_log)


# -- assertions -----------------------------------------------------------------------------------


def _assert_killed_shards_retried(
    sends: dict,
    summaries: dict,
    target: int,
    on_killed_worker: set[int],
    retried_on_survivor: set[int],
    killed: KilledWorker,
) -> None:
    """Every shard the dead worker ran took a second try, on the surviving worker; the other
    shards ran once. The target, killed mid-send, resumed from the ledger: its second try found
    numbers the first had settled (``earlier``) and sent the rest itself."""
    tries = {map_index: ti["try_number"] for map_index, ti in sends.items()}
    assert tries == {m: 2 if m in on_killed_worker else 1 for m in sends}, (tries, killed)
    assert retried_on_survivor == on_killed_worker, (retried_on_survivor, on_killed_worker)
    summary = summaries[target]
    assert summary["earlier"] > 0, summary
    assert summary["accepted"] + summary["failed"] > summary["earlier"], summary
    for map_index in set(sends) - on_killed_worker:
        assert summaries[map_index]["earlier"] == 0, summaries[map_index]


def _assert_each_number_sent_once(cluster: Cluster) -> None:
    """The emulator's own record: each accepted number exactly once, and no other number."""
    sent = Counter(m["destination_number"] for m in cluster.emulator("messages"))
    twice = sorted(number for number, times in sent.items() if times > 1)
    assert not twice, f"{len(twice)} number(s) sent more than once, e.g. {twice[:5]}"
    missing = RECIPIENTS.accepted - set(sent)
    assert not missing, f"{len(missing)} number(s) never sent, e.g. {sorted(missing)[:5]}"
    assert set(sent) == RECIPIENTS.accepted
    assert cluster.emulator("stats")["duplicates"] == 0


def _assert_outcomes_match_summaries(cluster: Cluster, run_id: str, summaries: dict) -> None:
    """One outcome row per input row in voxsms_results_outcomes, per shard as many as the
    shard's summary counts, with the outcomes the recipients imply."""
    totals = Counter()
    for summary in summaries.values():
        totals.update({k: summary[k] for k in ("recipients", "accepted", "failed", "invalid")})
        totals.update({"duplicate": summary["duplicates"]})
        assert summary["not_sent"] == summary["unknown"] == 0, summary
    assert dict(totals) == {
        "recipients": len(RECIPIENTS.rows),
        "accepted": len(RECIPIENTS.accepted),
        "failed": len(RECIPIENTS.blocked),
        "invalid": RECIPIENTS.invalid,
        "duplicate": RECIPIENTS.duplicates,
    }
    rows = cluster.sql(
        "SELECT map_index, outcome, count(*) FROM voxsms_results_outcomes"
        " WHERE dag_id = %s AND run_id = %s AND task_id = 'send' GROUP BY map_index, outcome",
        (DAG_ID, run_id),
    )
    by_shard: dict[int, Counter] = {}
    for map_index, outcome, count in rows:
        by_shard.setdefault(map_index, Counter())[outcome] = count
    assert set(by_shard) == set(summaries)
    for map_index, outcomes in by_shard.items():
        summary = summaries[map_index]
        assert outcomes.total() == summary["recipients"], (map_index, outcomes, summary)
        assert outcomes == Counter(
            {
                k: v
                for k, v in {
                    "accepted": summary["accepted"],
                    "failed": summary["failed"],
                    "invalid": summary["invalid"],
                    "duplicate": summary["duplicates"],
                }.items()
                if v
            }
        ), (map_index, outcomes, summary)
    [(accepted, distinct, with_id)] = cluster.sql(
        "SELECT count(*), count(DISTINCT destination_number), count(message_id)"
        " FROM voxsms_results_outcomes WHERE dag_id = %s AND run_id = %s AND outcome = 'accepted'",
        (DAG_ID, run_id),
    )
    assert accepted == distinct == with_id == len(RECIPIENTS.accepted)


def _assert_delivery_reports_complete(cluster: Cluster, run_id: str, shards: int) -> None:
    """Every accepted message has a final status in sms_delivery_status (none pending), as the
    emulator decides it: FAILED for numbers ending in 7, DELIVERED for the rest; each delivery
    report ran its wait in the triggerer, and the report task's sums agree."""
    rows = dict(
        cluster.sql(
            "SELECT delivery_status, count(*) FROM sms_delivery_status"
            " WHERE dag_id = %s AND run_id = %s GROUP BY delivery_status",
            (DAG_ID, run_id),
        )
    )
    failed = RECIPIENTS.failed_on_delivery
    assert rows == {"DELIVERED": len(RECIPIENTS.accepted) - failed, "FAILED": failed}
    deliveries = [cluster.return_value(DAG_ID, run_id, "delivery", m) for m in range(shards)]
    assert all(d["pending"] == 0 for d in deliveries), deliveries
    assert sum(d["messages"] for d in deliveries) == len(RECIPIENTS.accepted)
    report = cluster.return_value(DAG_ID, run_id, "report")
    assert report["delivered"] == len(RECIPIENTS.accepted) - failed, report
    assert report["failed_on_delivery"] == failed and report["pending"] == 0, report
    assert report["recipients"] == len(RECIPIENTS.rows), report
    for map_index in range(shards):
        log = cluster.task_log(DAG_ID, run_id, "delivery", map_index)
        assert "Trigger ended (done)" in log, log[-3000:]  # it deferred, and the trigger finished


def _assert_triggerer_never_blocked(cluster: Cluster, offset: int) -> None:
    """No "async thread was blocked" warning in the triggerer's log since ``offset``."""
    blocked = cluster.blocked_loop_warnings(offset)
    assert not blocked, f"the triggerer's event loop was held {len(blocked)} time(s):\n" + (
        "\n".join(blocked[:10])
    )


# -- steps ----------------------------------------------------------------------------------------


def _seed(cluster: Cluster, phones: list[str]) -> None:
    """The recipients table on voxsms_db, loaded with COPY (in one transaction)."""
    connect = contextlib.closing(psycopg2.connect(cluster.voxsms_dsn))
    with connect as conn, conn, conn.cursor() as cur:  # closed; committed; one cursor
        cur.execute("DROP TABLE IF EXISTS cluster_recipients")
        cur.execute("CREATE TABLE cluster_recipients (id SERIAL PRIMARY KEY, phone TEXT NOT NULL)")
        cur.copy_expert(
            "COPY cluster_recipients (phone) FROM STDIN", io.StringIO("\n".join(phones) + "\n")
        )


def _dag_parsed(cluster: Cluster) -> bool:
    return bool(cluster.api("GET", "dags", dag_id_pattern=DAG_ID)["total_entries"])


def _trigger(cluster: Cluster, **conf) -> str:
    """Once the DAG is parsed: unpause it and trigger a deferrable run over the seeded
    recipients with ``conf`` on top. Returns the run id."""
    cluster.wait(lambda: _dag_parsed(cluster), f"{DAG_ID} parsed", 120)
    cluster.api("PATCH", f"dags/{DAG_ID}", {"is_paused": False})
    base = {
        "recipients_sql": "SELECT phone FROM cluster_recipients ORDER BY id",
        "recipients_conn_id": "voxsms_db",
        "deferrable": True,
    }
    body = {"logical_date": None, "conf": {**base, **conf}}
    return cluster.api("POST", f"dags/{DAG_ID}/dagRuns", body)["dag_run_id"]


def _shard_mid_send(cluster: Cluster, run_id: str, polls: list[str]) -> int | None:
    """A running send shard whose ledger holds answered batches and fewer than
    `MID_SEND_BATCHES` claimed ones: it has sent, and a good part is still to send (judged by
    the claims, which are committed before each request, as outcome rows have been seen to lag).
    Fails when the shards got past that unseen (the send was too fast for the kill to land
    mid-shard), with what each poll saw."""
    sends = cluster.task_instances(DAG_ID, run_id, "send")
    running = {ti["map_index"] for ti in sends if ti["state"] == "running" and ti["pid"]}
    answered = _ledger_counts(cluster, run_id, "outcomes")
    claimed = _ledger_counts(cluster, run_id, "claims")
    polls.append(
        f"{time.strftime('%H:%M:%S')} "
        + " ".join(f"{t['map_index']}:{t['state']}/pid={t['pid']}" for t in sends)
        + f" claimed={claimed} answered={answered}"
    )
    for map_index in sorted(running):
        if answered.get(map_index, 0) > 0 and claimed.get(map_index, 0) < MID_SEND_BATCHES:
            return map_index
    finished = sends and all(ti["state"] in ("success", "failed") for ti in sends)
    too_far = running and all(claimed.get(m, 0) >= MID_SEND_BATCHES for m in running)
    if finished or too_far:
        seen = "\n".join(polls[-20:])
        pytest.fail(f"no send shard to kill mid-send; the last polls:\n{seen}")
    return None


def _ledger_counts(cluster: Cluster, run_id: str, rows: str = "outcomes") -> dict[int, int]:
    """Per send map index, the batches in the send ledger's ``claims`` (sent, answered or not)
    or ``outcomes`` (answered) table; empty before the ledger's tables exist."""
    exists = cluster.sql("SELECT to_regclass('voxsms_send_ledger_leases') IS NOT NULL")[0][0]
    if not exists:
        return {}
    return dict(
        cluster.sql(
            f"SELECT l.map_index, count(*) FROM voxsms_send_ledger_{rows} o"
            " JOIN voxsms_send_ledger_leases l ON l.ti_key = o.ti_key"
            " WHERE l.dag_id = %s AND l.run_id = %s AND l.task_id = 'send' GROUP BY l.map_index",
            (DAG_ID, run_id),
        )
    )


def _finished(cluster: Cluster, run_id: str, survivor: Component, retried: set[int]) -> dict | None:
    """The run once it ended; meanwhile notes the send shards whose second try is running in
    the surviving worker's process tree."""
    for ti in cluster.task_instances(DAG_ID, run_id, "send"):
        if ti["try_number"] == 2 and ti["state"] == "running" and survivor.runs(ti["pid"]):
            retried.add(ti["map_index"])
    run = cluster.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def _states(cluster: Cluster, run_id: str) -> list[tuple]:
    return sorted(
        (ti["task_id"], ti["map_index"], ti["state"], ti["try_number"])
        for ti in cluster.task_instances(DAG_ID, run_id)
    )


def _log(started: float, what: str) -> None:
    """Progress with the time since the test started (shown when the test fails)."""
    print(f"[{time.monotonic() - started:5.0f} s] {what}", flush=True)
