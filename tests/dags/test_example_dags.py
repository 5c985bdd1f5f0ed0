"""The example DAGs in dags/: they parse, and each runs green end to end against the emulator."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.common.sql.hooks.sql import DbApiHook
from conftest import REPO
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.sql import db_api_hook

DAGS = REPO / "dags"
EXAMPLES = {"voxsms_campaign", "voxsms_sharded_campaign", "voxsms_alert"}
BLOCKED = {"447443332299", "447443332298"}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def db(voxsms_db) -> DbApiHook:
    return db_api_hook(voxsms_db)


def test_example_dags_parse_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= EXAMPLES


def logged_rows(db: DbApiHook, run_id: str) -> pd.DataFrame:
    columns = ["task_id", "map_index", "destination_number", "input_number", "error_code", "stage"]
    rows = db.get_records(
        f"SELECT {', '.join(columns)} FROM sms_failed_numbers WHERE run_id = {db.placeholder}",
        parameters=(run_id,),
    )
    return pd.DataFrame(rows, columns=columns)


def test_campaign_sends_the_sample_and_logs_failed_numbers(dagbag, run_dag, voximplant_conn, db):
    voximplant_conn.state.set_faults(blocked_numbers=BLOCKED)
    tis = run_dag(dagbag.get_dag("voxsms_campaign"))
    assert {ti.state for ti in tis.values()} == {"success"}

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


def mapped_sends(tis: dict) -> dict:
    """{map_index: TaskInstance} of the mapped ``send`` task."""
    return {key[1]: ti for key, ti in tis.items() if isinstance(key, tuple) and key[0] == "send"}


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

    rows = logged_rows(db, sends[0].run_id)
    failed_by_shard = check_failures_logged_by_shard(sends, rows)
    assert any(failed_by_shard[i] for i in (1, 2, 3)), "a shard after the dead one failed some"
    assert len(rows) == sum(map(len, failed_by_shard.values())) > 0


def test_alert_dag_sends_the_on_call_sms(dagbag, run_dag, voximplant_conn):
    tis = run_dag(dagbag.get_dag("voxsms_alert"))
    assert tis["flaky"].state == "failed"
    (alert,) = voximplant_conn.state.messages_snapshot()
    assert alert["destination_number"] == "447443332200"
    assert alert["text"].startswith("Airflow alert: voxsms_alert.flaky failed")
