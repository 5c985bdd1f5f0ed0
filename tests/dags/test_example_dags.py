"""The example DAGs in dags/: they parse, each runs green end to end against the emulator and
follows the accepted messages to their delivery status, and a run whose send (or delivery report,
or logging) fails ends failed, with its failed numbers still logged."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk.exceptions import AirflowFailException
from conftest import REPO
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.sql import db_api_hook

DAGS = REPO / "dags"
EXAMPLES = {
    "voxsms_campaign",
    "voxsms_sharded_campaign",
    "voxsms_personalised_campaign",
    "voxsms_alert",
}
BLOCKED = {"447443332299", "447443332298"}
#: A SenderID the emulator's account does not have: every request gets error 507.
UNKNOWN_SENDER = "NotOurSender"
#: The emulator's delivery outcomes by last digit; the sample's accepted numbers ending in 7 or 8.
DELIVERY_BY_DIGIT = "7=FAILED,8=EXPIRED"
FAILED_ON_DELIVERY = {
    "447443332217": "FAILED",
    "447443332218": "EXPIRED",
    "33612345678": "EXPIRED",
    "819012345678": "EXPIRED",
}


@pytest.fixture
def dagbag() -> DagBag:
    """Parsed per test: ``dag.test()`` renders templated fields (``src_number`` from the run's
    params) into the DAG's own task objects, so a DAG run again would keep the last values."""
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def db(voxsms_db) -> DbApiHook:
    return db_api_hook(voxsms_db)


def test_example_dags_parse_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= EXAMPLES


def run_state(ti) -> str:
    """The state of the DAG run that ``ti`` belongs to."""
    from airflow.models import DagRun

    (run,) = DagRun.find(dag_id=ti.dag_id, run_id=ti.run_id)
    return run.state


def check_no_retries(dag) -> None:
    """A failed send is final in these runs: the example DAGs set no retries."""
    assert dag.get_task("send").retries == 0, "a retry would change the final states asserted"


def logged_rows(db: DbApiHook, run_id: str) -> pd.DataFrame:
    columns = ["task_id", "map_index", "destination_number", "input_number", "error_code", "stage"]
    rows = db.get_records(
        f"SELECT {', '.join(columns)} FROM sms_failed_numbers WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    return pd.DataFrame(rows, columns=columns)


def delivery_rows(db: DbApiHook, run_id: str) -> pd.DataFrame:
    columns = ["task_id", "map_index", "destination_number", "delivery_status"]
    rows = db.get_records(
        f"SELECT {', '.join(columns)} FROM sms_delivery_status WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    return pd.DataFrame(rows, columns=columns)


def test_campaign_sends_the_sample_and_logs_failed_numbers(dagbag, run_dag, voximplant_conn, db):
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert {ti.state for ti in tis.values()} == {"success"}
    assert run_state(tis["send"]) == "success"

    summary = xcom(tis["send"])
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1}, "nobody got the SMS twice"
    assert summary["accepted"] == len(sent) == 14
    assert summary["recipients"] == len(pd.read_csv(DAGS / "data" / "recipients.csv"))

    rows = logged_rows(db, tis["send"].run_id)
    assert len(rows) == summary["failed"] + summary["invalid"] == 5
    assert set(rows.loc[rows.stage == "api", "destination_number"]) == BLOCKED
    assert set(rows.loc[rows.stage == "api", "error_code"]) == {509}

    # Re-running the logging task of the same run replaces its rows instead of adding to them.
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert len(logged_rows(db, tis["send"].run_id)) == 5


@pytest.mark.parametrize(
    ("faults", "conf", "error"),
    [
        pytest.param({"insufficient_money_after": 0}, {}, 127, id="no-money"),
        pytest.param({}, {"src_number": UNKNOWN_SENDER}, 507, id="unknown-sender"),
    ],
)
def test_campaign_run_fails_when_the_send_fails_and_logs_its_failed_numbers(
    dagbag, run_dag, voximplant_conn, db, faults, conf, error
):
    """127 (retryable with the ledger) and 507 stop the send after it pushed its outputs."""
    dag = dagbag.get_dag("voxsms_campaign")
    check_no_retries(dag)
    voximplant_conn.state.set_faults(**faults)
    tis = run_dag(dag, run_conf=conf)
    assert tis["send"].state == "failed"
    assert tis["log_failed"].state == "success"
    assert run_state(tis["send"]) == "failed", "a logged failure must not turn the run green"
    assert tis["report"].state == "upstream_failed"
    assert tis["delivery"].state == "upstream_failed"
    assert voximplant_conn.state.messages_snapshot() == []
    assert voximplant_conn.state.stats.api_errors[error] > 0

    failed = xcom(tis["send"], "failed_numbers")
    rows = logged_rows(db, tis["send"].run_id)
    assert sorted(rows["input_number"]) == sorted(failed["input_number"])
    assert rows["stage"].value_counts().to_dict() == {"not_sent": 16, "validation": 3}


def test_campaign_run_fails_when_logging_the_failed_numbers_fails(
    dagbag, run_dag, voximplant_conn, db
):
    """A table of that name with other columns: the send succeeds, the log cannot write."""
    db.run("CREATE TABLE sms_failed_numbers (note TEXT)")
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert tis["send"].state == "success"
    assert tis["log_failed"].state == "failed"
    assert run_state(tis["send"]) == "failed", "the table misses the run's failed numbers"
    assert tis["report"].state == "success"


def test_campaign_follows_delivery_and_logs_delivery_failures(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db
):
    """Statuses of every accepted message in sms_delivery_status; the ones that failed on
    delivery in sms_failed_numbers (stage delivery, task delivery) next to the send's."""
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert {ti.state for ti in tis.values()} == {"success"}
    assert run_state(tis["send"]) == "success"
    run_id = tis["send"].run_id

    statuses = delivery_rows(db, run_id)
    accepted = {m["destination_number"] for m in voximplant_conn.state.messages_snapshot()}
    assert len(statuses) == len(accepted) == 14
    assert set(statuses["task_id"]) == {"delivery"} and set(statuses["map_index"]) == {-1}
    truth = {n: FAILED_ON_DELIVERY.get(n, "DELIVERED") for n in accepted}
    assert (
        dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == truth
    )

    rows = logged_rows(db, run_id)
    by_stage = rows.groupby("stage")["task_id"].agg(set).to_dict()
    assert by_stage == {
        "validation": {"send"},
        "api": {"send"},
        "delivery": {"delivery"},
    }
    on_delivery = rows[rows.stage == "delivery"]
    assert sorted(on_delivery["destination_number"]) == sorted(FAILED_ON_DELIVERY)
    assert len(rows) == 5 + len(FAILED_ON_DELIVERY), "the send's 5 rows are still there"

    report = xcom(tis["report"])
    assert report["accepted"] == 14
    assert (report["delivered"], report["failed_on_delivery"], report["pending"]) == (10, 4, 0)

    # Re-running the same DAG run replaces both tasks' rows instead of adding to them.
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert len(logged_rows(db, run_id)) == 5 + len(FAILED_ON_DELIVERY)
    assert len(delivery_rows(db, run_id)) == 14


def test_campaign_run_fails_when_the_delivery_report_fails_and_logs_every_failed_number(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, monkeypatch
):
    """The report fails after pushing its outputs (fail_on_undelivered_ratio=0 here): the run
    fails, and the send's and the report's failed numbers are logged all the same."""
    execute = A2PSmsDeliveryReportOperator.execute

    def strict(self, context):
        self.fail_on_undelivered_ratio = 0.0
        return execute(self, context)

    monkeypatch.setattr(A2PSmsDeliveryReportOperator, "execute", strict)  # tasks run in-process
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    dag = dagbag.get_dag("voxsms_campaign")
    assert dag.get_task("delivery").retries == 0, "a retry would change the final states"
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert tis["delivery"].state == "failed"
    assert tis["log_failed"].state == "success"
    assert tis["report"].state == "upstream_failed"
    assert run_state(tis["send"]) == "failed", "a failed delivery report must fail the run"

    rows = logged_rows(db, tis["send"].run_id)
    assert rows["stage"].value_counts().to_dict() == {"validation": 3, "api": 2, "delivery": 4}
    assert len(delivery_rows(db, tis["send"].run_id)) == 14


def test_campaign_takes_params_from_conf(dagbag, run_dag, voximplant_conn, db, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("phone,text\n+447443330001,\n+447443330002,Personal text\n")
    conf = {"recipients_path": str(csv), "text": "Default text", "src_number": "447443332211"}
    tis = run_dag(dagbag.get_dag("voxsms_campaign"), run_conf=conf)
    assert tis["send"].state == "success"
    messages = voximplant_conn.state.messages_snapshot()
    assert {(m["destination_number"], m["text"]) for m in messages} == {
        ("447443330001", "Default text"),
        ("447443330002", "Personal text"),
    }
    assert {m["source_number"] for m in messages} == {"447443332211"}


def mapped_sends(tis: dict, task_id: str = "send") -> dict:
    """{map_index: TaskInstance} of the mapped ``send`` task (or another mapped task)."""
    return {key[1]: ti for key, ti in tis.items() if isinstance(key, tuple) and key[0] == task_id}


def check_failures_logged_by_shard(sends: dict, rows: pd.DataFrame) -> dict:
    """Each shard's failed_numbers XCom is in the table under that shard's own map index."""
    failed_by_shard = {}
    for map_index, ti in sends.items():
        failed = xcom(ti, "failed_numbers")
        failed_by_shard[map_index] = [] if failed is None else sorted(failed["input_number"])
    logged_by_shard = {
        map_index: sorted(rows.loc[rows.map_index == map_index, "input_number"])
        for map_index in sends
    }
    assert logged_by_shard == failed_by_shard
    assert not rows["input_number"].duplicated().any(), "every failed number lands once"
    return failed_by_shard


@pytest.mark.parametrize("shards", [4, 1])
def test_sharded_campaign_sends_each_number_once_and_gathers_failures(
    dagbag, run_dag, voximplant_conn, db, shards
):
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag("voxsms_sharded_campaign"), run_conf={"shards": shards})
    sends = mapped_sends(tis)
    assert sorted(sends) == list(range(shards)), "one mapped instance per shard"
    assert {ti.state for ti in tis.values()} == {"success"}
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1} and len(sent) == 14

    rows = logged_rows(db, sends[0].run_id)
    assert len(rows) == 5
    assert set(rows.loc[rows.stage == "api", "destination_number"]) == BLOCKED
    failed_by_shard = check_failures_logged_by_shard(sends, rows)
    if shards > 1:
        assert sum(1 for numbers in failed_by_shard.values() if numbers) > 1, (
            "the sample spreads its failures over several shards"
        )


@pytest.mark.parametrize("shards", [4, 1])
def test_sharded_campaign_follows_each_shards_messages_and_logs_delivery_failures(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, shards
):
    """delivery's map index i follows send's map index i; its statuses and its delivery
    failures are in the tables under that map index."""
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    tis = run_dag(dagbag.get_dag("voxsms_sharded_campaign"), run_conf={"shards": shards})
    assert {ti.state for ti in tis.values()} == {"success"}
    sends, deliveries = mapped_sends(tis), mapped_sends(tis, "delivery")
    assert sorted(deliveries) == sorted(sends) == list(range(shards))
    run_id = sends[0].run_id

    statuses = delivery_rows(db, run_id)
    assert set(statuses["task_id"]) == {"delivery"}
    for map_index, send in sends.items():
        accepted = xcom(send, "accepted_numbers")
        shard = statuses[statuses.map_index == map_index]
        assert sorted(shard["destination_number"]) == sorted(accepted["destination_number"])
    truth = {n: FAILED_ON_DELIVERY.get(n, "DELIVERED") for n in statuses["destination_number"]}
    assert len(truth) == len(statuses) == 14
    assert dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == (
        truth
    )

    rows = logged_rows(db, run_id)
    on_delivery = rows[rows.stage == "delivery"]
    assert set(on_delivery["task_id"]) == {"delivery"}
    assert sorted(on_delivery["destination_number"]) == sorted(FAILED_ON_DELIVERY)
    for map_index, ti in deliveries.items():
        logged = on_delivery.loc[on_delivery.map_index == map_index, "destination_number"]
        assert sorted(logged) == sorted(xcom(ti, "failed_numbers")["destination_number"])
    if shards > 1:
        assert on_delivery["map_index"].nunique() > 1, "delivery failures in several shards"
    check_failures_logged_by_shard(sends, rows[rows.task_id == "send"])
    report = xcom(tis["report"])
    assert (report["delivered"], report["failed_on_delivery"], report["pending"]) == (10, 4, 0)


def test_sharded_campaign_logs_failures_under_their_map_index_when_a_shard_dies(
    dagbag, run_dag, voximplant_conn, db, monkeypatch
):
    """Shard 0 dies before pushing its outputs: the others must not move up into its place."""
    execute = A2PSendSmsOperator.execute

    def dies_in_shard_0(self, context):
        if context["ti"].map_index == 0:
            raise RuntimeError("worker lost before any output was pushed")
        return execute(self, context)

    monkeypatch.setattr(A2PSendSmsOperator, "execute", dies_in_shard_0)  # tasks run in-process
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag("voxsms_sharded_campaign"), run_conf={"shards": 4})
    sends = mapped_sends(tis)
    assert sorted(sends) == [0, 1, 2, 3]
    assert sends[0].state == "failed" and xcom(sends[0], "failed_numbers") is None
    assert tis["gather_failed"].state == "success"
    assert run_state(sends[0]) == "failed", "one failed shard fails the run"
    assert tis["report"].state == "upstream_failed"
    assert tis["delivery"].state == "upstream_failed"

    rows = logged_rows(db, sends[0].run_id)
    failed_by_shard = check_failures_logged_by_shard(sends, rows)
    assert any(failed_by_shard[i] for i in (1, 2, 3)), "a shard after the dead one failed some"
    assert len(rows) == sum(map(len, failed_by_shard.values())) > 0


def test_sharded_campaign_run_fails_when_a_shard_fails_and_gathers_its_failed_numbers(
    dagbag, run_dag, voximplant_conn, db, monkeypatch
):
    """Shard 0 sends under a SenderID the account lacks: 507 stops it after it pushed its
    outputs; the other shards succeed."""
    execute = A2PSendSmsOperator.execute

    def unknown_sender_in_shard_0(self, context):
        if context["ti"].map_index == 0:
            self.src_number = UNKNOWN_SENDER
        return execute(self, context)

    monkeypatch.setattr(A2PSendSmsOperator, "execute", unknown_sender_in_shard_0)
    dag = dagbag.get_dag("voxsms_sharded_campaign")
    check_no_retries(dag)
    tis = run_dag(dag, run_conf={"shards": 4})
    sends = mapped_sends(tis)
    assert {i: ti.state for i, ti in sends.items()} == {
        0: "failed",
        1: "success",
        2: "success",
        3: "success",
    }
    assert tis["gather_failed"].state == "success"
    assert run_state(sends[0]) == "failed", "one failed shard fails the run"
    assert tis["report"].state == "upstream_failed"
    assert tis["delivery"].state == "upstream_failed"
    assert voximplant_conn.state.stats.api_errors[507] > 0

    rows = logged_rows(db, sends[0].run_id)
    failed_by_shard = check_failures_logged_by_shard(sends, rows)
    assert "not_sent" in set(rows.loc[rows.map_index == 0, "stage"]), "shard 0's numbers logged"
    assert any(failed_by_shard[i] for i in (1, 2, 3))


def test_sharded_campaign_run_fails_when_a_shards_delivery_report_fails_and_logs_it(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, monkeypatch
):
    """Shard 0's delivery report fails after pushing its outputs; the other shards' succeed."""
    from airflow.sdk.exceptions import AirflowFailException

    execute = A2PSmsDeliveryReportOperator.execute

    def fails_in_shard_0(self, context):
        result = execute(self, context)
        if context["ti"].map_index == 0:
            raise AirflowFailException("shard 0's delivery report fails after its outputs")
        return result

    monkeypatch.setattr(A2PSmsDeliveryReportOperator, "execute", fails_in_shard_0)
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    dag = dagbag.get_dag("voxsms_sharded_campaign")
    assert dag.get_task("delivery").retries == 0, "a retry would change the final states"
    tis = run_dag(dag, run_conf={"shards": 4})
    deliveries = mapped_sends(tis, "delivery")
    assert {i: ti.state for i, ti in deliveries.items()} == {
        0: "failed",
        1: "success",
        2: "success",
        3: "success",
    }
    assert tis["gather_failed"].state == "success"
    assert tis["report"].state == "upstream_failed"
    assert run_state(deliveries[0]) == "failed", "a failed delivery report fails the run"

    rows = logged_rows(db, deliveries[0].run_id)
    on_delivery = rows[rows.stage == "delivery"]
    for map_index, ti in deliveries.items():
        logged = on_delivery.loc[on_delivery.map_index == map_index, "destination_number"]
        assert sorted(logged) == sorted(xcom(ti, "failed_numbers")["destination_number"])
    assert sorted(on_delivery["destination_number"]) == sorted(FAILED_ON_DELIVERY)
    assert len(delivery_rows(db, deliveries[0].run_id)) == 14


def test_alert_dag_sends_the_on_call_sms(dagbag, run_dag, voximplant_conn):
    tis = run_dag(dagbag.get_dag("voxsms_alert"))
    assert tis["flaky"].state == "failed"
    (alert,) = voximplant_conn.state.messages_snapshot()
    assert alert["destination_number"] == "447443332200"
    assert alert["text"].startswith("Airflow alert: voxsms_alert.flaky failed")


# -- voxsms_personalised_campaign: templates, opt-outs, send windows -------------------------

#: The clock the send window is judged by: London 12:00, Berlin 13:00, New York 07:00 and
#: Tokyo 21:00, so the British and German customers are inside 09:00-20:00, the others not.
NOON_UTC = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
#: Later the same day: New York 09:30 is inside too; Tokyo (23:30) still is not.
AFTERNOON_UTC = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
CUSTOMERS = [  # phone, first_name, code (text: leading zeros stay)
    ("07443 332201", "Ann", "4821"),
    ("+44 7443 332202", "Bo", "0042"),
    ("+49 151 23456789", "Dora", "7710"),
    ("+44 7443 332203", "  ", "5555"),  # blank first_name: invalid
    ("+44 7443 332205", "Jo", None),  # no code: invalid
    ("+44 7443 332204", "Eve", "1111"),  # opted out, written another way
    ("0033 6 12 34 56 78", "Fay", "2222"),  # opted out, written another way
    ("+1 212 555 0142", "Gus", "3333"),  # New York: outside the window at noon UTC
    ("+81 90 1234 5678", "Hana", "4444"),  # Tokyo: outside the window at noon UTC
    ("+44 7443 332299", "Ian", "6666"),  # blocked by the emulator: 509
]
OPT_OUTS = ["07443332204", "+33612345678", "not-a-number"]  # the last suppresses nothing
SENT_AT_NOON = {
    ("447443332201", "Hi Ann, your code is 4821."),
    ("447443332202", "Hi Bo, your code is 0042."),
    ("4915123456789", "Hi Dora, your code is 7710."),
}
#: Every row ends as exactly one of these.
PERSONAL_COUNTS = (
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
)
NEW_YORK = ("12125550142", "America/New_York", "2026-01-15 14:00:00")
TOKYO = ("819012345678", "Asia/Tokyo", "2026-01-16 00:00:00")


@pytest.fixture
def customers_db(db) -> DbApiHook:
    """voxsms_db with voxsms_customers and voxsms_opt_outs seeded as in CUSTOMERS and
    OPT_OUTS, and no sms_deferred_numbers yet (PostgreSQL keeps tables between tests)."""
    for table in ("voxsms_customers", "voxsms_opt_outs", "sms_deferred_numbers"):
        db.run(f"DROP TABLE IF EXISTS {table}")
    db.run("CREATE TABLE voxsms_customers (phone TEXT, first_name TEXT, code TEXT)")
    db.run("CREATE TABLE voxsms_opt_outs (phone TEXT)")
    db.insert_rows("voxsms_customers", CUSTOMERS, target_fields=["phone", "first_name", "code"])
    db.insert_rows("voxsms_opt_outs", [(n,) for n in OPT_OUTS], target_fields=["phone"])
    return db


def set_clock(monkeypatch, now: datetime) -> None:
    """The send window's clock (dag.test runs the tasks in this process)."""
    monkeypatch.setattr("airflow_provider_voxsms.sms.window.utc_now", lambda: now)


def deferred_rows(db: DbApiHook, run_id: str) -> set[tuple]:
    rows = db.get_records(
        "SELECT task_id, map_index, destination_number, time_zone, next_window_start "
        f"FROM sms_deferred_numbers WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    assert {(task_id, map_index) for task_id, map_index, *_ in rows} <= {("send", -1)}
    # SQLite gives the timestamp back as the text written, PostgreSQL as a datetime.
    return {(number, zone, str(start)) for *_, number, zone, start in rows}


def failure_reasons(db: DbApiHook, run_id: str) -> dict[str, str]:
    rows = db.get_records(
        "SELECT input_number, stage, error_description FROM sms_failed_numbers "
        f"WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    return {number: f"{stage}: {description}" for number, stage, description in rows}


def test_personalised_campaign_renders_texts_skips_opt_outs_and_defers_by_local_time(
    dagbag, run_dag, voximplant_conn, customers_db, monkeypatch
):
    db = customers_db
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    set_clock(monkeypatch, NOON_UTC)
    tis = run_dag(dagbag.get_dag("voxsms_personalised_campaign"))
    assert {ti.state for ti in tis.values()} == {"success"}
    assert run_state(tis["send"]) == "success"
    run_id = tis["send"].run_id

    # The texts as the emulator received them: rendered per row, one request per text.
    messages = voximplant_conn.state.messages_snapshot()
    assert {(m["destination_number"], m["text"]) for m in messages} == SENT_AT_NOON
    sent = {m["destination_number"] for m in messages}
    assert not sent & {"447443332204", "33612345678"}, "opted-out numbers were texted"

    summary = xcom(tis["report"])
    assert {key: summary[key] for key in ("accepted", "failed", "invalid")} == {
        "accepted": 3,
        "failed": 1,
        "invalid": 2,
    }
    assert (summary["suppressed"], summary["outside_window"], summary["duplicates"]) == (2, 2, 0)
    assert summary["distinct_texts"] == 4, "the three accepted and the blocked number's"
    assert summary["recipients"] == len(CUSTOMERS)
    assert sum(summary[key] for key in PERSONAL_COUNTS) == len(CUSTOMERS), "one verdict per row"
    assert (summary["delivered"], summary["failed_on_delivery"]) == (3, 0)

    assert failure_reasons(db, run_id) == {
        "+44 7443 332203": "validation: placeholder {first_name} is empty",
        "+44 7443 332205": "validation: placeholder {code} is empty",
        "+44 7443 332299": "api: A2P SMS disabled",
    }
    assert deferred_rows(db, run_id) == {NEW_YORK, TOKYO}
    assert xcom(tis["log_numbers"]) == {"failed": 3, "deferred": 2}

    # Cleared in the afternoon: New York's window has opened. The ledger keeps everyone
    # accepted or refused at noon from being sent again; the deferred rows are replaced.
    set_clock(monkeypatch, AFTERNOON_UTC)
    tis = run_dag(dagbag.get_dag("voxsms_personalised_campaign"))
    assert {ti.state for ti in tis.values()} == {"success"}
    messages = voximplant_conn.state.messages_snapshot()
    assert {(m["destination_number"], m["text"]) for m in messages} == SENT_AT_NOON | {
        ("12125550142", "Hi Gus, your code is 3333.")
    }
    assert len(messages) == 4, "nobody got the SMS twice"
    summary = xcom(tis["send"])
    assert (summary["accepted"], summary["earlier"], summary["outside_window"]) == (4, 4, 1)
    assert sum(summary[key] for key in PERSONAL_COUNTS) == len(CUSTOMERS)
    assert deferred_rows(db, run_id) == {TOKYO}
    assert len(failure_reasons(db, run_id)) == 3


@pytest.mark.parametrize("missing", ["voxsms_customers", "voxsms_opt_outs"])
def test_personalised_campaign_fails_before_sending_when_a_table_is_not_seeded(
    dagbag, run_dag, voximplant_conn, customers_db, missing
):
    customers_db.run(f"DROP TABLE {missing}")
    dag = dagbag.get_dag("voxsms_personalised_campaign")
    with pytest.raises(AirflowFailException, match=rf"Cannot read table {missing} .*seed them"):
        dag.get_task("extract").python_callable()

    tis = run_dag(dag)
    assert tis["extract"].state == "failed", "the extract, not the send, finds it missing"
    assert tis["send"].state == "upstream_failed"
    assert run_state(tis["extract"]) == "failed"
    assert voximplant_conn.state.messages_snapshot() == []
