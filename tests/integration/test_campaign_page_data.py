"""The campaign page's JSON (ui.campaign.campaign_view over ui.locate's rows), without the
api-server: real DAG runs against the emulator, read back from Airflow's metadata database and
the tables the tasks wrote (or their XComs). Its counts must equal the tasks' return values."""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import replace

import pandas as pd
import pytest
from airflow.sdk import DAG, XComArg
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator
from airflow_provider_voxsms.ui import failed_rows, locate
from airflow_provider_voxsms.ui.campaign import OUTCOME_KEYS, campaign_view
from airflow_provider_voxsms.ui.failed_rows import FailedFilter
from airflow_provider_voxsms.ui.locate import TaskKey

UK = [f"447700900{i:03d}" for i in range(300)]
FRANCE = [f"3361234{i:04d}" for i in range(60)]
BLOCKED = {UK[5], FRANCE[7]}
# Delivery outcomes by last digit: 3 FAILED, 4 EXPIRED; the others DELIVERED.
BY_DIGIT = "3=FAILED,4=EXPIRED"


def recipients() -> pd.DataFrame:
    """360 numbers, 20 copies written nationally, three invalid rows, one opted out."""
    phones = [f"+{n}" for n in UK + FRANCE]
    copies = ["0" + n[2:] for n in UK[:20]]
    return pd.DataFrame({"phone": [*phones, *copies, "12", "not a number", "+44"]})


def campaign_dag(dag_id: str, path: str, conn_id: str, *, tables: bool) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send",
            src_number="VoxDemo",
            text="Hello",
            default_region="GB",
            recipients_path=path,
            recipients_chunk_rows=100,
            suppression_list=[UK[9]],
            results_conn_id=conn_id if tables else None,
        )
        A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=XComArg(send, key="accepted_numbers"),
            src_number="VoxDemo",
            timeout=20,
            poll_interval=0.3,
            max_poll_interval=0.6,
            report_conn_id=conn_id if tables else None,
        )
    return dag


def read_view(ti, use_summary: bool = True) -> tuple[dict, dict]:
    """The JSON and the failed numbers, from the counts the tasks stored (where they did) or,
    without ``use_summary``, counted over their rows."""
    from airflow.utils.session import create_session

    key = TaskKey(ti.dag_id, ti.run_id, "send")
    with create_session() as session, ExitStack() as stack:
        task = locate.task_instance(session, key)
        report = locate.report_task(session, key)
        rows = locate.campaign_rows(session, key, report, stack)
        rows.outcomes = replace(rows.outcomes, use_summary=use_summary)
        rows.statuses = replace(rows.statuses, use_summary=use_summary)
        view = campaign_view(task, rows)
        counts = failed_rows.failed_count(rows.outcomes, rows.statuses, FailedFilter())
        listed = list(failed_rows.failed_blocks(rows.outcomes, rows.statuses, FailedFilter()))
        api = failed_rows.failed_page(
            rows.outcomes, rows.statuses, FailedFilter(stage="api"), offset=0, limit=50
        )
        pages = [
            failed_rows.failed_page(rows.outcomes, rows.statuses, where, offset=0, limit=50)
            for where in (FailedFilter(), FailedFilter(stage="delivery"), FailedFilter(code="509"))
        ]
        stored = (rows.outcomes.stored() is not None, rows.statuses.stored() is not None)
    return view, {"counts": counts, "listed": listed, "api": api, "pages": pages, "stored": stored}


@pytest.mark.parametrize("tables", [True, False], ids=["tables", "xcom"])
def test_the_campaign_json_equals_the_tasks_return_values(
    tables, voximplant_conn, voxsms_db, run_dag, tmp_path
):
    voximplant_conn.state.set_faults(
        blocked_numbers=BLOCKED,
        delivery_queued_s=0.3,
        delivery_dispatched_s=0.3,
        delivery_by_last_digit=BY_DIGIT,
    )
    recipients().to_csv(tmp_path / "r.csv", index=False)
    dag = campaign_dag(
        f"voxsms_test_page_{'tables' if tables else 'xcom'}",
        str(tmp_path / "r.csv"),
        voxsms_db,
        tables=tables,
    )
    tis = run_dag(dag)
    assert {ti.state for ti in tis.values()} == {"success"}
    summary, report = xcom(tis["send"]), xcom(tis["delivery"])
    view, failed = read_view(tis["send"])

    source = "table" if tables else "xcom"
    assert view["sources"] == {"outcomes": source, "statuses": source}
    assert view["outcomes"] == {key: summary[key] for key in OUTCOME_KEYS}
    assert view["identity"] == {
        "recipients": 383,
        "outcomes": 383,
        "holds": True,
        "matches_return_value": True,
    }
    assert (summary["accepted"], summary["failed"], summary["invalid"]) == (357, 2, 3)
    assert (summary["duplicates"], summary["suppressed"]) == (20, 1)
    funnel = {step["step"]: step["count"] for step in view["funnel"]}
    assert funnel == {
        "recipients": 383,
        "valid": summary["valid"],
        "sent": 359,
        "accepted": 357,
        "delivered": report["delivered"],
    }
    statuses = view["delivery"]["statuses"]
    for status in ("delivered", "failed", "expired", "rejected", "aborted", "unknown", "pending"):
        assert statuses.get(status.upper() if status != "pending" else status) == report[status]
    assert view["delivery"]["fragments"] == report["fragments"]
    assert [r["error_code"] for r in view["reasons"]["failed"]] == [509]
    assert sum(r["count"] for r in view["reasons"]["invalid"]) == 3

    countries = {c["country_code"]: c for c in view["countries"]}
    in_xcom = 383 - summary["duplicates"] - summary["suppressed"]  # XComs have no such rows
    assert sum(c["recipients"] for c in countries.values()) == (383 if tables else in_xcom)
    assert countries["33"]["accepted"] == 59 and countries["33"]["failed"] == 1
    assert sum(c["delivered"] for c in countries.values()) == report["delivered"]

    undelivered = report["messages"] - report["delivered"] - report["pending"]
    send_failed = summary["failed"] + summary["invalid"] + summary["not_sent"]
    assert failed["counts"] == {"send": send_failed, "delivery": undelivered}
    assert view["failed"] == failed["counts"]
    assert len(failed["listed"]) == send_failed + undelivered
    assert {r["destination_number"] for r in failed["api"]} == BLOCKED

    # The counts the send and the report stored when they finished (tables only) give the
    # same answer as counting their rows.
    assert failed["stored"] == (tables, tables)
    scanned_view, scanned = read_view(tis["send"], use_summary=False)
    assert scanned["stored"] == (False, False)
    assert scanned_view == view
    assert {k: v for k, v in scanned.items() if k != "stored"} == {
        k: v for k, v in failed.items() if k != "stored"
    }


def test_each_shard_of_a_mapped_task_group_has_its_own_campaign(
    voximplant_conn, voxsms_db, run_dag, tmp_path
):
    """A task group mapped over two shards (``shard.send`` -> ``shard.delivery``, results in
    tables): each map index's page counts its own shard and follows its own report."""
    from airflow.sdk import task_group
    from airflow.utils.session import create_session

    voximplant_conn.state.set_faults(
        delivery_queued_s=0.3, delivery_dispatched_s=0.3, delivery_by_last_digit=BY_DIGIT
    )
    paths = []
    for index, numbers in enumerate([UK[:100], FRANCE[:40]]):
        paths.append(str(tmp_path / f"shard-{index}.csv"))
        pd.DataFrame({"phone": [f"+{n}" for n in numbers]}).to_csv(paths[-1], index=False)
    with DAG("voxsms_test_page_shards", schedule=None) as dag:

        @task_group
        def shard(path: str):
            send = A2PSendSmsOperator(
                task_id="send",
                src_number="VoxDemo",
                text="Hello",
                recipients_path=path,
                results_conn_id=voxsms_db,
            )
            A2PSmsDeliveryReportOperator(
                task_id="delivery",
                messages=XComArg(send, key="accepted_numbers"),
                src_number="VoxDemo",
                timeout=20,
                poll_interval=0.3,
                max_poll_interval=0.6,
                report_conn_id=voxsms_db,
            )

        shard.expand(path=paths)
    tis = run_dag(dag)
    assert {ti.state for ti in tis.values()} == {"success"}
    run_id = tis[("shard.send", 0)].run_id
    with create_session() as session:
        listed = locate.send_tasks(session, dag.dag_id, run_id)
    assert [(t["task_id"], t["map_index"]) for t in listed] == [
        ("shard.send", 0),
        ("shard.send", 1),
    ]
    for index, size in enumerate((100, 40)):
        summary = xcom(tis[("shard.send", index)])
        report = xcom(tis[("shard.delivery", index)])
        key = TaskKey(dag.dag_id, run_id, "shard.send", index)
        with create_session() as session, ExitStack() as stack:
            found = locate.report_task(session, key)
            rows = locate.campaign_rows(session, key, found, stack)
            view = campaign_view(locate.task_instance(session, key), rows)
        assert found == TaskKey(dag.dag_id, run_id, "shard.delivery", index)
        assert view["identity"]["recipients"] == summary["recipients"] == size
        assert view["outcomes"] == {k: summary[k] for k in OUTCOME_KEYS}
        assert view["delivery"]["statuses"]["DELIVERED"] == report["delivered"]
        assert view["delivery"]["messages"] == report["messages"] == size
        assert rows.outcomes.stored()["rows"] == [(size,)]
        assert rows.statuses.stored()["rows"] == [(size,)]


def test_delivered_per_variant_is_stored_by_the_report_and_replaced_on_a_rerun(
    voximplant_conn, voxsms_db, run_dag
):
    """A campaign with text variants and a hold-out, both tables on one connection: the
    report stores delivered per variant (its join with the send's rows) when it finishes, and
    the page's variants equal the send's and the report's return values, the emulator's
    outcomes per number, and the page's own join of the rows. Running the DAG run again (the
    same task instances: a retry of each) replaces the stored join with the new one."""
    from airflow_provider_voxsms.sms.variants import Variants

    numbers = [f"44770092{i:04d}" for i in range(240)]
    texts = {"A": "Hi {name}", "B": "Hello {name}"}
    with DAG("voxsms_test_page_variants", schedule=None) as dag:
        send = A2PSendSmsOperator(
            task_id="send",
            recipients=[{"phone": n, "name": f"N{i}"} for i, n in enumerate(numbers)],
            text=None,
            text_variants=texts,
            holdout=0.2,
            src_number="VoxDemo",
            results_conn_id=voxsms_db,
        )
        A2PSmsDeliveryReportOperator(
            task_id="delivery",
            messages=XComArg(send, key="accepted_numbers"),
            src_number="VoxDemo",
            timeout=20,
            poll_interval=0.3,
            max_poll_interval=0.6,
            report_conn_id=voxsms_db,
        )
    drawn = Variants.parse(texts, holdout=0.2, seed=f"{dag.dag_id}.send").assign(pd.Series(numbers))
    variant_of = dict(zip(numbers, map(str, drawn), strict=True))
    for by_digit, undelivered in ((BY_DIGIT, "34"), ("1=FAILED,2=REJECTED,5=EXPIRED", "125")):
        voximplant_conn.state.set_faults(
            delivery_queued_s=0.3, delivery_dispatched_s=0.3, delivery_by_last_digit=by_digit
        )
        tis = run_dag(dag)
        assert {ti.state for ti in tis.values()} == {"success"}
        summary, report = xcom(tis["send"]), xcom(tis["delivery"])
        view, found = read_view(tis["send"])
        scanned_view, _ = read_view(tis["send"], use_summary=False)

        shares = Counter(variant_of.values())
        assert summary["held_out"] == shares["holdout"] > 0
        expected = {name: 0 for name in texts}
        for number, name in variant_of.items():
            if name != "holdout" and number[-1] not in undelivered:
                expected[name] += 1
        held_out = {"variant": "holdout", "recipients": shares["holdout"], "accepted": 0}
        assert view["variants"] == [
            {"variant": name, **summary["variants"][name], "delivered": expected[name]}
            for name in sorted(texts)
        ] + [{**held_out, "delivered": 0}]
        assert {name: summary["variants"][name]["accepted"] for name in texts} == {
            name: shares[name] for name in texts
        }
        assert sum(expected.values()) == report["delivered"] > 0
        assert scanned_view == view  # the page's own join answers the same
        assert found["stored"] == (True, True)
        kept, tag = stored_join(tis["send"])
        assert sorted(kept, key=str) == sorted(
            [(tag, None, 0), *[(tag, name, n) for name, n in expected.items()]], key=str
        )


def stored_join(ti) -> tuple[list[tuple], str]:
    """The report's stored delivered per variant, and the ``joined`` tag of the send's rows."""
    from airflow.utils.session import create_session

    from airflow_provider_voxsms.storage import summary

    key = TaskKey(ti.dag_id, ti.run_id, "send")
    with create_session() as session, ExitStack() as stack:
        rows = locate.campaign_rows(session, key, locate.report_task(session, key), stack)
        kept = rows.statuses.stored()[summary.VARIANTS]
        return kept, summary.joined_tag(rows.outcomes.table, rows.outcomes.key)
