"""The example DAGs in dags/: they parse, each runs green end to end against the emulator and
follows the accepted messages to their delivery status, and a run whose send (or delivery report,
or logging) fails ends failed, with its failed numbers still logged and what the send accepted
before it failed followed all the same. The sharded example hands its shards over as Parquet
files, never as XCom rows, leaves every outcome in tables, and follows each shard's messages in
the shard's own task group, so a failed shard blocks only its own delivery report."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk.exceptions import AirflowFailException
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import (
    FOLLOWED_IDS_KEY,
    A2PSmsDeliveryReportOperator,
)
from airflow_provider_voxsms.storage.sql import db_api_hook

REPO = Path(__file__).resolve().parents[2]
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
    assert tis["delivery"].state == "success", "it follows what the send accepted: nothing"
    assert xcom(tis["delivery"])["messages"] == 0
    assert voximplant_conn.state.messages_snapshot() == []
    assert voximplant_conn.state.stats.api_errors[error] > 0

    failed = xcom(tis["send"], "failed_numbers")
    rows = logged_rows(db, tis["send"].run_id)
    assert sorted(rows["input_number"]) == sorted(failed["input_number"])
    assert rows["stage"].value_counts().to_dict() == {"not_sent": 16, "validation": 3}


def test_campaign_follows_what_was_sent_before_the_money_ran_out_and_still_fails(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, tmp_path
):
    """3,000 numbers, the money out after 1,200 accepted: the send fails after pushing its
    outputs, the delivery report follows every message that went out (one row each in
    sms_delivery_status), both stages' failed numbers are logged, and the run fails."""
    numbers = [f"4477009{i:05d}" for i in range(3000)]
    csv = tmp_path / "list.csv"
    pd.DataFrame({"phone": [f"+{n}" for n in numbers]}).to_csv(csv, index=False)
    voximplant_conn.state.set_faults(insufficient_money_after=1200)
    voximplant_delivery(by_last_digit="7=FAILED")
    dag = dagbag.get_dag("voxsms_campaign")
    check_no_retries(dag)
    tis = run_dag(dag, run_conf={"recipients_path": str(csv)})
    assert tis["send"].state == "failed"
    assert tis["delivery"].state == "success"
    assert tis["log_failed"].state == "success"
    assert tis["report"].state == "upstream_failed"
    assert run_state(tis["send"]) == "failed", "a campaign that fell short is not green"

    messages = voximplant_conn.state.messages_snapshot()
    sent = Counter(m["destination_number"] for m in messages)
    assert set(sent.values()) == {1}, "nobody got the SMS twice"
    assert 1200 <= len(sent) < 3000 and voximplant_conn.state.stats.api_errors[127] > 0
    run_id = tis["send"].run_id
    statuses = delivery_rows(db, run_id)
    assert Counter(statuses["destination_number"]) == sent, "one row per message that went out"
    truth = {n: "FAILED" if n.endswith("7") else "DELIVERED" for n in sent}
    assert dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == (
        truth
    )
    summary = xcom(tis["delivery"])
    assert summary["messages"] == len(sent) and summary["pending"] == 0

    rows = logged_rows(db, run_id)
    stages = rows.groupby("stage")["task_id"].agg(set).to_dict()
    assert stages == {"not_sent": {"send"}, "delivery": {"delivery"}}
    not_sent = set(rows.loc[rows.stage == "not_sent", "destination_number"])
    assert not_sent == set(numbers) - set(sent), "every number not sent is logged"
    on_delivery = rows.loc[rows.stage == "delivery", "destination_number"]
    assert sorted(on_delivery) == sorted(n for n, s in truth.items() if s == "FAILED")


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


# -- voxsms_sharded_campaign: Parquet shards, mapped sends, outcomes in tables ----------------

SHARDED = "voxsms_sharded_campaign"
SAMPLE = pd.read_csv(DAGS / "data" / "recipients.csv", dtype=str, keep_default_na=False)
#: The sample's rows by outcome: 14 accepted, the two blocked numbers failed (509), three
#: invalid ("not-a-number", "12345", ""), Alice's second row a duplicate.
SAMPLE_OUTCOMES = {"accepted": 14, "failed": 2, "invalid": 3, "duplicate": 1}
#: What a send's XComs may be, besides its summary: where its rows are in the results table.
LOCATION_XCOMS = {"accepted_numbers", "failed_numbers", "unknown_numbers", "deferred_numbers"}
#: What a delivery report of messages read from a results table pushes besides its summary:
#: where its rows are in sms_delivery_status.
DELIVERY_LOCATION_XCOMS = {"delivery_status", "failed_numbers"}


def mapped_sends(tis: dict, task_id: str = "send") -> dict:
    """{map_index: TaskInstance} of the mapped ``send`` task (or another mapped task)."""
    return {key[1]: ti for key, ti in tis.items() if isinstance(key, tuple) and key[0] == task_id}


def sharded_conf(tmp_path, **conf) -> dict:
    """Run conf with the shards under this test's tmp_path (file://, as object storage)."""
    return {"shards_path": f"file://{tmp_path / 'shards'}", **conf}


def outcome_rows(db: DbApiHook, run_id: str) -> pd.DataFrame:
    columns = [
        "task_id",
        "map_index",
        "destination_number",
        "input_number",
        "outcome",
        "message_id",
        "error_code",
    ]
    rows = db.get_records(
        f"SELECT {', '.join(columns)} FROM voxsms_results_outcomes WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture
def shard_files(monkeypatch) -> dict:
    """What each send shard read, recorded as it starts: {map_index: {"path": its
    recipients_path, "files": the file names there, "phones": the rows' phone column}} (the
    run deletes the shards at its end). Tests that patch execute too do it after this."""
    seen: dict = {}
    execute = A2PSendSmsOperator.execute

    def recording(self, context):
        from airflow.sdk import ObjectStoragePath

        where = ObjectStoragePath(self.recipients_path)
        files = sorted(where.iterdir(), key=lambda f: f.name)
        phones = []
        for file in files:
            with file.open("rb") as handle:
                phones += pd.read_parquet(handle)["phone"].tolist()
        seen[context["ti"].map_index] = {
            "path": self.recipients_path,
            "files": [f.name for f in files],
            "phones": phones,
        }
        return execute(self, context)

    monkeypatch.setattr(A2PSendSmsOperator, "execute", recording)  # tasks run in-process
    return seen


def check_one_row_per_input_row(rows: pd.DataFrame, shard_files: dict, sends: dict) -> None:
    """The results table holds each shard's rows once, under the shard's map index."""
    assert set(rows["task_id"]) <= {"send"}
    for map_index in sends:
        logged = rows.loc[rows.map_index == map_index, "input_number"].fillna("")
        assert Counter(logged) == Counter(shard_files[map_index]["phones"]), map_index


def check_shards_removed(tmp_path) -> None:
    run_dirs = list((tmp_path / "shards").glob(f"{SHARDED}/*"))
    assert run_dirs == [], "cleanup_shards deletes the run's shard directory"


def speed_up_retries(dag) -> None:
    """The DAG retries a send twice, 15 s apart; here at once (the same tries, less waiting)."""
    send = dag.get_task("send")
    assert send.retries == 2
    send.retry_delay = timedelta(0)


@pytest.mark.parametrize("shards", [4, 1])
def test_sharded_campaign_sends_each_number_once_and_records_one_outcome_per_row(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path, shards
):
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=sharded_conf(tmp_path, shards=shards))
    sends = mapped_sends(tis)
    assert sorted(sends) == list(range(shards)), "one mapped instance per shard"
    assert {ti.state for ti in tis.values()} == {"success"}
    assert run_state(sends[0]) == "success"
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1} and len(sent) == 14

    run_id = sends[0].run_id
    rows = outcome_rows(db, run_id)
    assert len(rows) == len(SAMPLE), "one row per input row"
    assert rows["outcome"].value_counts().to_dict() == SAMPLE_OUTCOMES
    check_one_row_per_input_row(rows, shard_files, sends)
    accepted = rows[rows.outcome == "accepted"]
    assert set(accepted["destination_number"]) == set(sent)
    assert accepted["message_id"].notna().all()
    failed = rows[rows.outcome == "failed"]
    assert set(failed["destination_number"]) == BLOCKED and set(failed["error_code"]) == {509}
    if shards > 1:
        refused = rows[rows.outcome.isin(["failed", "invalid"])]
        assert refused["map_index"].nunique() > 1, "the sample spreads its failures over shards"

    # The layout: <shards_path>/<dag_id>/<run_id, made safe>/shard-NNNN/part-NNNN.parquet.
    run_dir = f"file://{tmp_path / 'shards' / SHARDED}/"
    for map_index, shard in shard_files.items():
        assert shard["path"] == xcom(tis["split"])[map_index]
        assert shard["path"].startswith(run_dir)
        run_name, shard_name = shard["path"][len(run_dir) :].split("/")
        assert run_name.startswith("manual__2026-01-01T00_00_00_00_00-")
        assert not set(run_name) & set(":+."), run_id
        assert re.fullmatch(r"shard-\d{4}", shard_name)
        assert shard["files"] == ["part-0000.parquet"], "the sample is one chunk"
    check_shards_removed(tmp_path)

    report = xcom(tis["report"])
    assert report["shards"] == shards and report["recipients"] == len(SAMPLE)
    assert (report["accepted"], report["failed"], report["invalid"]) == (14, 2, 3)
    assert report["duplicates"] == 1

    # Cleared: the ledger sends nothing again, and each shard's rows are replaced.
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=sharded_conf(tmp_path, shards=shards))
    assert {ti.state for ti in tis.values()} == {"success"}
    assert len(voximplant_conn.state.messages_snapshot()) == 14, "nobody got the SMS twice"
    assert len(outcome_rows(db, run_id)) == len(SAMPLE)
    check_shards_removed(tmp_path)


def test_sharded_campaign_puts_every_copy_of_a_number_in_one_shard(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path
):
    """240 numbers, each also written twice more in other formats, in later chunks of 60 rows:
    each number lands in one shard, whose send texts it once."""
    numbers = [f"447700900{i:03d}" for i in range(240)]
    phones = [
        *(f"+{n}" for n in numbers),
        *(f"0{n[2:6]} {n[6:]}" for n in numbers),  # national: 07700 900123
        *(f"0044-{n[2:]}" for n in numbers[::-1]),
    ]
    csv = tmp_path / "copies.csv"
    pd.DataFrame({"phone": phones}).to_csv(csv, index=False)
    conf = sharded_conf(tmp_path, recipients_path=str(csv), shards=4, chunk_rows=60)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert {ti.state for ti in tis.values()} == {"success"}
    sends = mapped_sends(tis)
    assert sorted(sends) == [0, 1, 2, 3]
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert sent == dict.fromkeys(numbers, 1), "every number texted once"
    for shard in shard_files.values():
        assert shard["files"] == [f"part-{i:04d}.parquet" for i in range(12)], "12 chunks"

    rows = outcome_rows(db, sends[0].run_id)
    assert len(rows) == len(phones)
    assert rows["outcome"].value_counts().to_dict() == {"accepted": 240, "duplicate": 480}
    assert (rows.groupby("destination_number")["map_index"].nunique() == 1).all()
    check_one_row_per_input_row(rows, shard_files, sends)
    report = xcom(tis["report"])
    assert (report["recipients"], report["accepted"], report["duplicates"]) == (720, 240, 480)
    check_shards_removed(tmp_path)


def test_sharded_campaign_reads_its_recipients_from_sql(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path
):
    """The sample and four more numbers in a table on voxsms_db, read 6 rows at a time (a
    server-side cursor on PostgreSQL)."""
    db.run("DROP TABLE IF EXISTS voxsms_sharded_recipients")
    db.run("CREATE TABLE voxsms_sharded_recipients (id INTEGER, phone TEXT, name TEXT)")
    extra = [(f"+44 7443 33223{i}", f"Extra {i}") for i in range(4)]  # not in the sample CSV
    listed = [(row.phone, row.name) for row in SAMPLE.itertuples()] + extra
    db.insert_rows(
        "voxsms_sharded_recipients",
        [(i, phone, name) for i, (phone, name) in enumerate(listed)],
        target_fields=["id", "phone", "name"],
    )
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    conf = sharded_conf(
        tmp_path,
        recipients_sql="SELECT phone, name FROM voxsms_sharded_recipients ORDER BY id",
        chunk_rows=6,
    )
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert {ti.state for ti in tis.values()} == {"success"}
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1} and len(sent) == 18
    assert {f"44744333223{i}" for i in range(4)} <= set(sent)
    rows = outcome_rows(db, mapped_sends(tis)[0].run_id)
    assert len(rows) == len(listed)
    assert rows["outcome"].value_counts().to_dict() == {**SAMPLE_OUTCOMES, "accepted": 18}
    assert Counter(rows["input_number"].fillna("")) == Counter(phone for phone, _ in listed)
    check_one_row_per_input_row(rows, shard_files, mapped_sends(tis))
    assert max(len(shard["files"]) for shard in shard_files.values()) > 1, "chunks of 6 rows"
    check_shards_removed(tmp_path)


def run_xcoms(run_id: str) -> list[tuple[str, int, str, int, object]]:
    """Every XCom of a voxsms_sharded_campaign run: (task_id, map_index, key, size of the stored JSON, value)."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        stored = (
            session.query(XComModel)
            .filter(XComModel.dag_id == SHARDED, XComModel.run_id == run_id)
            .all()
        )
        return [
            (
                x.task_id,
                x.map_index,
                x.key,
                len(json.dumps(x.value)),
                deserialize(XComModel.deserialize_value(x)),
            )
            for x in stored
        ]


def test_sharded_campaign_keeps_recipient_rows_out_of_xcom(
    dagbag, run_dag, voximplant_conn, db, tmp_path
):
    """1,000 recipients: split hands over shard URLs, each send and each delivery report
    where its rows are, and no XCom holds recipient rows."""
    csv = tmp_path / "thousand.csv"
    pd.DataFrame({"phone": [f"+447700901{i:03d}" for i in range(1000)]}).to_csv(csv, index=False)
    conf = sharded_conf(tmp_path, recipients_path=str(csv), shards=4)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert {ti.state for ti in tis.values()} == {"success"}
    xcoms = {(t, i, k): (size, value) for t, i, k, size, value in run_xcoms(tis["split"].run_id)}
    shards = range(4)
    assert set(xcoms) == {
        ("split", -1, "return_value"),
        *(("send", i, k) for i in shards for k in ["return_value", *LOCATION_XCOMS]),
        *(("delivery", i, k) for i in shards for k in ["return_value", *DELIVERY_LOCATION_XCOMS]),
        ("report", -1, "return_value"),
    }
    for (task_id, map_index, key), (size, value) in xcoms.items():
        # A rows XCom of 1,000 numbers would take over 12 kB; these stay small.
        assert size < 1500, (task_id, map_index, key, size)
        assert isinstance(value, list if task_id == "split" else dict), (task_id, key)

    urls = xcoms[("split", -1, "return_value")][1]
    assert len(urls) == 4 and all(isinstance(url, str) for url in urls)
    assert all(url.startswith(f"file://{tmp_path / 'shards' / SHARDED}/") for url in urls)
    location = {"conn_id", "table", "dag_id", "run_id", "task_id", "map_index", "campaign_id"}
    for i in shards:
        where = xcoms[("send", i, "return_value")][1]["results"]
        assert set(where) == location
        assert (where["table"], where["task_id"], where["map_index"]) == (
            "voxsms_results_outcomes",
            "send",
            i,
        )
        for key in LOCATION_XCOMS:
            value = xcoms[("send", i, key)][1]
            assert set(value) == {*location, "outcomes", "rows"}
            assert {k: value[k] for k in location} == where
    accepted = sum(xcoms[("send", i, "accepted_numbers")][1]["rows"] for i in shards)
    assert accepted == xcom(tis["report"])["accepted"] == 1000
    for i in shards:
        counts = xcoms[("delivery", i, "return_value")][1]
        assert all(isinstance(v, int | float) for v in counts.values()), counts


@pytest.mark.parametrize(
    ("shards", "deferrable"),
    [(4, False), (1, False), pytest.param(4, True, id="4-deferrable")],
)
def test_sharded_campaign_follows_each_shards_messages_to_delivery(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, tmp_path, shards, deferrable
):
    """delivery's map index i follows send's map index i, reading its accepted messages from
    the results table; statuses in sms_delivery_status under that map index. With param
    deferrable each report waits in the triggerer (dag.test runs it in-process)."""
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    conf = sharded_conf(tmp_path, shards=shards, deferrable=deferrable)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert {ti.state for ti in tis.values()} == {"success"}
    sends, deliveries = mapped_sends(tis), mapped_sends(tis, "delivery")
    assert sorted(deliveries) == sorted(sends) == list(range(shards))
    run_id = sends[0].run_id

    statuses = delivery_rows(db, run_id)
    rows = outcome_rows(db, run_id)
    assert set(statuses["task_id"]) == {"delivery"}
    for map_index in sends:
        accepted = rows[(rows.map_index == map_index) & (rows.outcome == "accepted")]
        shard = statuses[statuses.map_index == map_index]
        assert sorted(shard["destination_number"]) == sorted(accepted["destination_number"])
    truth = {n: FAILED_ON_DELIVERY.get(n, "DELIVERED") for n in statuses["destination_number"]}
    assert len(truth) == len(statuses) == 14
    assert dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == (
        truth
    )
    undelivered = statuses[statuses.delivery_status != "DELIVERED"]
    assert sorted(undelivered["destination_number"]) == sorted(FAILED_ON_DELIVERY)
    if shards > 1:
        assert undelivered["map_index"].nunique() > 1, "delivery failures in several shards"
    for ti in deliveries.values():
        followed = xcom(ti, FOLLOWED_IDS_KEY)
        assert (followed is not None) == deferrable, "pushed when it defers to the triggerer"
    report = xcom(tis["report"])
    assert (report["delivered"], report["failed_on_delivery"], report["pending"]) == (10, 4, 0)
    check_shards_removed(tmp_path)


def test_sharded_campaign_fails_when_a_shard_dies_and_keeps_the_others_outcomes(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path, monkeypatch
):
    """Shard 0's worker dies in every try (3: two retries): the run fails, the other shards'
    outcomes are in the table, and the shards are deleted all the same."""
    execute = A2PSendSmsOperator.execute

    def dies_in_shard_0(self, context):
        if context["ti"].map_index == 0:
            raise RuntimeError("worker lost before anything was sent")
        return execute(self, context)

    monkeypatch.setattr(A2PSendSmsOperator, "execute", dies_in_shard_0)
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    dag = dagbag.get_dag(SHARDED)
    speed_up_retries(dag)
    tis = run_dag(dag, run_conf=sharded_conf(tmp_path, shards=4))
    sends = mapped_sends(tis)
    assert {i: ti.state for i, ti in sends.items()} == {
        0: "failed",
        1: "success",
        2: "success",
        3: "success",
    }
    assert sends[0].try_number == 3, "retried twice"
    assert run_state(sends[0]) == "failed", "one failed shard fails the run"
    assert tis["report"].state == "upstream_failed"
    deliveries = mapped_sends(tis, "delivery")
    assert {i: ti.state for i, ti in deliveries.items()} == {
        0: "skipped",  # its send pushed nothing to follow
        1: "success",
        2: "success",
        3: "success",
    }, "a dead shard blocks only its own delivery report"
    assert tis["cleanup_shards"].state == "success"
    check_shards_removed(tmp_path)

    rows = outcome_rows(db, sends[0].run_id)
    assert 0 not in set(rows["map_index"])
    check_one_row_per_input_row(rows, {i: shard_files[i] for i in (1, 2, 3)}, [1, 2, 3])
    refused = rows[rows.outcome.isin(["failed", "invalid"])]
    assert len(refused) > 0, "a shard after the dead one refused some"
    sent = {m["destination_number"] for m in voximplant_conn.state.messages_snapshot()}
    assert sent == set(rows.loc[rows.outcome == "accepted", "destination_number"])


def test_sharded_campaign_retries_a_lost_shard_from_the_ledger(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path, monkeypatch
):
    """Shard 0's worker dies after sending, before its outputs: the retry resumes from the
    send ledger (nobody texted twice) and replaces the shard's rows in the results table."""
    execute = A2PSendSmsOperator.execute

    def lost_after_sending(self, context):
        result = execute(self, context)
        if context["ti"].map_index == 0 and context["ti"].try_number == 1:
            raise RuntimeError("worker lost after sending")
        return result

    monkeypatch.setattr(A2PSendSmsOperator, "execute", lost_after_sending)
    dag = dagbag.get_dag(SHARDED)
    speed_up_retries(dag)
    tis = run_dag(dag, run_conf=sharded_conf(tmp_path, shards=4))
    assert {ti.state for ti in tis.values()} == {"success"}
    sends = mapped_sends(tis)
    assert sends[0].try_number == 2
    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1} and len(sent) == 16
    summary = xcom(sends[0])
    assert summary["accepted"] == summary["earlier"] > 0, "the retry sent nothing again"
    rows = outcome_rows(db, sends[0].run_id)
    assert len(rows) == len(SAMPLE), "the retry replaced the first try's rows"
    check_one_row_per_input_row(rows, shard_files, sends)
    check_shards_removed(tmp_path)


def test_sharded_campaign_run_fails_when_a_shard_fails_and_keeps_its_outcomes(
    dagbag, run_dag, voximplant_conn, db, shard_files, tmp_path, monkeypatch
):
    """Shard 0 sends under a SenderID the account lacks: 507 stops it (no retry: a retry
    cannot fix it) after it wrote its outcomes; the other shards succeed."""
    execute = A2PSendSmsOperator.execute

    def unknown_sender_in_shard_0(self, context):
        if context["ti"].map_index == 0:
            self.src_number = UNKNOWN_SENDER
        return execute(self, context)

    monkeypatch.setattr(A2PSendSmsOperator, "execute", unknown_sender_in_shard_0)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=sharded_conf(tmp_path, shards=4))
    sends = mapped_sends(tis)
    assert {i: ti.state for i, ti in sends.items()} == {
        0: "failed",
        1: "success",
        2: "success",
        3: "success",
    }
    assert sends[0].try_number == 1, "a stop a retry cannot fix is not retried"
    assert run_state(sends[0]) == "failed", "one failed shard fails the run"
    assert tis["report"].state == "upstream_failed"
    deliveries = mapped_sends(tis, "delivery")
    assert {ti.state for ti in deliveries.values()} == {"success"}, "each follows its shard"
    assert xcom(deliveries[0])["messages"] == 0, "shard 0 sent nothing"
    assert tis["cleanup_shards"].state == "success"
    assert voximplant_conn.state.stats.api_errors[507] > 0
    check_shards_removed(tmp_path)

    rows = outcome_rows(db, sends[0].run_id)
    assert len(rows) == len(SAMPLE), "the failed shard's outcomes are in the table too"
    check_one_row_per_input_row(rows, shard_files, sends)
    assert "not_sent" in set(rows.loc[rows.map_index == 0, "outcome"]), "shard 0's numbers"
    assert "not_sent" not in set(rows.loc[rows.map_index != 0, "outcome"])


def test_sharded_campaign_follows_every_shards_messages_when_the_money_runs_out(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, tmp_path
):
    """4,000 numbers over 4 shards, the money out after 1,500 accepted: the shard that runs
    into it fails part-way and the shards after it fail with nothing sent (each tried three
    times, resuming from its ledger); every shard's delivery report follows what its own send
    accepted, one row per message that went out; and the run fails."""
    numbers = [f"4477009{i:05d}" for i in range(4000)]
    csv = tmp_path / "list.csv"
    pd.DataFrame({"phone": numbers}).to_csv(csv, index=False)
    voximplant_conn.state.set_faults(insufficient_money_after=1500)
    voximplant_delivery(by_last_digit="7=FAILED")
    dag = dagbag.get_dag(SHARDED)
    speed_up_retries(dag)
    tis = run_dag(dag, run_conf=sharded_conf(tmp_path, recipients_path=str(csv), shards=4))
    sends, deliveries = mapped_sends(tis), mapped_sends(tis, "delivery")
    states = {i: ti.state for i, ti in sends.items()}
    assert sorted(states.values()) == ["failed", "failed", "failed", "success"], states
    assert all(sends[i].try_number == 3 for i, state in states.items() if state == "failed")
    assert {ti.state for ti in deliveries.values()} == {"success"}, "each follows its own send"
    assert tis["report"].state == "upstream_failed"
    assert run_state(sends[0]) == "failed", "a campaign that fell short is not green"

    sent = Counter(m["destination_number"] for m in voximplant_conn.state.messages_snapshot())
    assert set(sent.values()) == {1}, "nobody got the SMS twice"
    assert 1500 <= len(sent) < 2500
    run_id = sends[0].run_id
    rows = outcome_rows(db, run_id)
    accepted = rows[rows.outcome == "accepted"]
    assert Counter(accepted["destination_number"]) == sent
    statuses = delivery_rows(db, run_id)
    assert Counter(statuses["destination_number"]) == sent, "one row per message that went out"
    for map_index, shard in statuses.groupby("map_index"):
        mine = accepted.loc[accepted.map_index == map_index, "destination_number"]
        assert sorted(shard["destination_number"]) == sorted(mine), map_index
    part_way = [
        i for i, state in states.items() if state == "failed" and (accepted.map_index == i).any()
    ]
    assert len(part_way) == 1, "one shard ran out of money half-way, and its report ran too"
    truth = {n: "FAILED" if n.endswith("7") else "DELIVERED" for n in sent}
    assert dict(zip(statuses["destination_number"], statuses["delivery_status"], strict=True)) == (
        truth
    )


def test_sharded_campaign_run_fails_when_a_shards_delivery_report_fails(
    dagbag, run_dag, voximplant_conn, voximplant_delivery, db, tmp_path, monkeypatch
):
    """Shard 0's delivery report fails after writing its statuses; the others succeed."""
    execute = A2PSmsDeliveryReportOperator.execute

    def fails_in_shard_0(self, context):
        result = execute(self, context)
        if context["ti"].map_index == 0:
            raise AirflowFailException("shard 0's delivery report fails after its outputs")
        return result

    monkeypatch.setattr(A2PSmsDeliveryReportOperator, "execute", fails_in_shard_0)
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    voximplant_delivery(by_last_digit=DELIVERY_BY_DIGIT)
    dag = dagbag.get_dag(SHARDED)
    assert dag.get_task("delivery").retries == 0, "a retry would change the final states"
    tis = run_dag(dag, run_conf=sharded_conf(tmp_path, shards=4))
    deliveries = mapped_sends(tis, "delivery")
    assert {i: ti.state for i, ti in deliveries.items()} == {
        0: "failed",
        1: "success",
        2: "success",
        3: "success",
    }
    assert tis["report"].state == "upstream_failed"
    assert run_state(deliveries[0]) == "failed", "a failed delivery report fails the run"
    statuses = delivery_rows(db, deliveries[0].run_id)
    assert len(statuses) == 14 and set(statuses["map_index"]) == {0, 1, 2, 3}
    undelivered = statuses[statuses.delivery_status != "DELIVERED"]
    assert sorted(undelivered["destination_number"]) == sorted(FAILED_ON_DELIVERY)
    check_shards_removed(tmp_path)


def test_sharded_campaign_caps_shards_at_max_map_length_and_creates_no_empty_shard(
    dagbag, run_dag, voximplant_conn, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=sharded_conf(tmp_path, shards=8))
    assert {ti.state for ti in tis.values()} == {"success"}
    assert sorted(mapped_sends(tis)) == [0, 1]
    assert len(voximplant_conn.state.messages_snapshot()) == 14

    # One number written three ways: one shard of the 8 has rows, and only it is created.
    one = tmp_path / "one.csv"
    one.write_text("phone\n+447443332240\n07443 332240\n0044 7443 332240\n")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "8")
    conf = sharded_conf(tmp_path, recipients_path=str(one), shards=8)
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert {ti.state for ti in tis.values()} == {"success"}
    (url,) = xcom(tis["split"])
    assert re.search(r"/shard-000[0-7]$", url)
    assert sorted(mapped_sends(tis)) == [0]
    assert xcom(tis["report"])["duplicates"] == 2

    # No rows at all: no shard, nothing to send, and the run still succeeds.
    empty = tmp_path / "empty.csv"
    empty.write_text("phone,name\n")
    conf = sharded_conf(tmp_path, recipients_path=str(empty))
    tis = run_dag(dagbag.get_dag(SHARDED), run_conf=conf)
    assert xcom(tis["split"]) == [], "no rows, no shards"
    assert run_state(tis["split"]) == "success"
    assert len(voximplant_conn.state.messages_snapshot()) == 15
    check_shards_removed(tmp_path)


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
