"""The Airflow seams of the campaign rules, in real DAG runs against the emulator over HTTP:
Jinja before placeholders, opt-outs from SQL and XComArgs, waits for a send window through a
real deferral and in the worker, what the ledger keeps across runs, XCom sizes, parse-time
checks. The rules themselves are unit tests of the runner (``tests/unit/test_runner.py``).

Windows are judged by ``airflow_provider_voxsms.sms.window.utc_now``, which these tests replace
with a clock set to a chosen moment, so no result depends on the machine's time of day.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from airflow.sdk import DAG, task
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.storage.sql import db_api_hook

UK = [f"4474433322{i:02d}" for i in range(10, 16)]  # Europe/London (and the Crown dependencies)
NEW_YORK = ["12015550123", "12015550124"]  # America/New_York
COUNTS = (
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
)


def clock_at(monkeypatch, moment: datetime) -> None:
    """Judge windows as if it were ``moment`` when the task first asks, with time going on
    from there (so the time a DAG run takes to start does not count)."""
    anchor: list[datetime] = []

    def utc_now() -> datetime:
        if not anchor:
            anchor.append(datetime.now(UTC))
        return moment + (datetime.now(UTC) - anchor[0])

    monkeypatch.setattr("airflow_provider_voxsms.sms.window.utc_now", utc_now)


def sent(server) -> Counter:
    return Counter((m["destination_number"], m["text"]) for m in server.state.messages_snapshot())


def adds_up(summary: dict) -> None:
    assert sum(summary[k] for k in COUNTS) == summary["recipients"], summary


def one_task_dag(dag_id: str, recipients, **kwargs) -> DAG:
    with DAG(dag_id, schedule=None) as dag:
        kwargs.setdefault("text", "Hello")
        A2PSendSmsOperator(task_id="send", recipients=recipients, src_number="VoxDemo", **kwargs)
    return dag


# -- templates -----------------------------------------------------------------------------------


def test_each_row_gets_its_own_rendered_text_and_equal_texts_share_requests(
    voximplant_conn, run_dag
):
    with DAG("voxsms_test_template", schedule=None) as dag:

        @task
        def customers() -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "phone": UK[:5],
                    "first_name": ["Ann", "Bob", "Ann", "", "Dee"],
                    "code": [1234.0, 99.0, 1234.0, 5.0, None],  # a CSV column with a gap: float
                }
            )

        A2PSendSmsOperator(
            task_id="send",
            recipients=customers(),
            text="Hi {first_name}, your code is {code} ({{ dag.dag_id }}).",
            src_number="VoxDemo",
        )

    tis = run_dag(dag)
    assert tis["send"].state == "success"
    tail = " (voxsms_test_template)."
    assert sent(voximplant_conn) == {
        (UK[0], f"Hi Ann, your code is 1234{tail}"): 1,
        (UK[1], f"Hi Bob, your code is 99{tail}"): 1,
        (UK[2], f"Hi Ann, your code is 1234{tail}"): 1,
    }
    summary = xcom(tis["send"])
    assert summary["distinct_texts"] == 2 and summary["batches"] == 2, "equal texts share"
    assert summary["accepted"] == 3 and summary["invalid"] == 2
    adds_up(summary)
    failed = xcom(tis["send"], "failed_numbers")
    assert dict(zip(failed["destination_number"], failed["error_description"], strict=True)) == {
        UK[3]: "placeholder {first_name} is empty",
        UK[4]: "placeholder {code} is empty",
    }


def test_a_placeholder_naming_no_column_fails_before_sending_listing_the_columns(
    voximplant_conn, run_dag
):
    rows = [{"phone": UK[0], "first_name": "Ann"}]
    tis = run_dag(one_task_dag("voxsms_test_template_missing", rows, text="Hi {firstname}"))
    assert tis["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


# -- opt-outs ------------------------------------------------------------------------------------


def test_opt_outs_from_sql_and_an_upstream_xcom_together(voximplant_conn, voxsms_db, run_dag):
    hook = db_api_hook(voxsms_db)
    hook.run("DROP TABLE IF EXISTS voxsms_test_opt_outs")
    hook.run("CREATE TABLE voxsms_test_opt_outs (phone VARCHAR(32))")
    hook.insert_rows("voxsms_test_opt_outs", [("+44 7443 332211",), ("not a number",)])
    with DAG("voxsms_test_opt_outs_sql", schedule=None) as dag:

        @task
        def unsubscribed() -> list:
            return ["07443332212"]

        A2PSendSmsOperator(
            task_id="send",
            recipients=UK[:4] + [UK[1]],  # a duplicate of an opted-out number: a duplicate
            text="Hello",
            src_number="VoxDemo",
            default_region="GB",
            suppression_list=unsubscribed(),
            suppression_sql="SELECT phone FROM voxsms_test_opt_outs",
            suppression_conn_id=voxsms_db,
        )
    tis = run_dag(dag)
    assert set(sent(voximplant_conn)) == {(UK[0], "Hello"), (UK[3], "Hello")}
    summary = xcom(tis["send"])
    assert (summary["suppressed"], summary["duplicates"], summary["accepted"]) == (2, 1, 2)
    adds_up(summary)


def test_suppression_sql_needs_its_connection():
    with pytest.raises(ValueError, match="suppression_sql and suppression_conn_id"):
        A2PSendSmsOperator(
            task_id="send", recipients=[], text="x", src_number="S", suppression_sql="SELECT 1"
        )


# -- send windows --------------------------------------------------------------------------------


def test_wait_mode_sends_the_rest_when_their_window_opens_through_a_real_deferral(
    voximplant_conn, voxsms_db, run_dag, monkeypatch
):
    """13:59:57 UTC: London (14:00) is inside 09-20, New York (08:59:57) opens in 3 s: the task
    sends London, defers to the triggerer until 14:00 UTC, resumes from the ledger, sends New
    York, and ends with every row accepted (London's as settled by the first pass)."""
    clock_at(monkeypatch, datetime(2026, 12, 1, 13, 59, 57, tzinfo=UTC))
    deferrals = []
    original = A2PSendSmsOperator.defer

    def counted(self, *, trigger, method_name, **kwargs):
        deferrals.append((type(trigger).__name__, method_name))
        return original(self, trigger=trigger, method_name=method_name, **kwargs)

    monkeypatch.setattr(A2PSendSmsOperator, "defer", counted)
    dag = one_task_dag(
        "voxsms_test_window_wait",
        [*UK[:3], *NEW_YORK],
        send_window=("09:00", "20:00"),
        outside_window="wait",
        deferrable=True,
        ledger_conn_id=voxsms_db,
    )
    started = time.monotonic()
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert deferrals == [("DateTimeTrigger", "execute_next_window")]
    assert time.monotonic() - started >= 2.0, "waited for New York's window"
    assert sent(voximplant_conn) == Counter({(n, "Hello"): 1 for n in [*UK[:3], *NEW_YORK]})
    messages = voximplant_conn.state.messages_snapshot()
    first_ny = min(i for i, m in enumerate(messages) if m["destination_number"] in NEW_YORK)
    assert all(m["destination_number"] in NEW_YORK for m in messages[first_ny:])
    summary = xcom(tis["send"])
    assert summary["accepted"] == 5 and summary["earlier"] == 3 and summary["outside_window"] == 0
    adds_up(summary)
    assert xcom(tis["send"], "deferred_numbers").empty
    assert len(xcom(tis["send"], "accepted_numbers")) == 5


def test_wait_mode_without_deferral_sleeps_in_the_worker(
    voximplant_conn, voxsms_db, run_dag, monkeypatch
):
    clock_at(monkeypatch, datetime(2026, 12, 1, 13, 59, 58, tzinfo=UTC))
    dag = one_task_dag(
        "voxsms_test_window_sleep",
        [UK[0], NEW_YORK[0]],
        send_window=("09:00", "20:00"),
        outside_window="wait",
        deferrable=False,
        ledger_conn_id=voxsms_db,
    )
    summary = xcom(run_dag(dag)["send"])
    assert summary["accepted"] == 2 and summary["outside_window"] == 0
    assert set(sent(voximplant_conn)) == {(UK[0], "Hello"), (NEW_YORK[0], "Hello")}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"send_window": ("09:00",)}, "send_window must be"),
        ({"send_window": ("9am", "20:00")}, "HH:MM"),
        ({"send_window": ("09:00", "09:00")}, "empty window"),
        ({"send_window": ("09:00", "20:00"), "window_timezone": "Mars/Base"}, "time zone"),
        ({"send_window": ("09:00", "20:00"), "outside_window": "later"}, "outside_window"),
        ({"send_window": ("09:00", "20:00"), "outside_window": "wait"}, "ledger_conn_id"),
        ({"max_segments": 0}, "max_segments"),
        ({"dedupe": "text"}, "dedupe is 'number' or 'number_and_text'"),
        ({"frequency_cap": (1, timedelta(hours=24))}, "frequency_cap needs ledger_conn_id"),
        ({"frequency_cap": (0, timedelta(hours=1)), "ledger_conn_id": "db"}, "count >= 1"),
        ({"frequency_cap": (1, 3600), "ledger_conn_id": "db"}, r"\(count, timedelta\)"),
        ({"validity_period": -5}, "validity_period is a positive"),
        ({"validity_period": "1h"}, "validity_period is a positive"),
        ({"text_variants": {"A": "a"}}, "exactly one of text="),
        ({"text": None, "text_variants": {"A": "a", "B": "b"}, "holdout": 0.7}, "share from 0"),
        ({"text": None, "text_variants": {"A": "a"}, "variant_weights": {"B": 1}}, "exactly the"),
    ],
)
def test_bad_window_and_budget_settings_are_refused_when_the_dag_is_parsed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kwargs = {"text": "x", **kwargs}
        A2PSendSmsOperator(task_id="send", recipients=[], src_number="S", **kwargs)


def test_variants_reach_the_api_rendered_and_the_tables_name_each_numbers_variant(
    voximplant_conn, run_dag, monkeypatch, tmp_path
):
    """The seams of variants: Jinja and placeholders in each variant's text, the default seed
    (``"<dag_id>.<task_id>"``), and the variant in the XCom, the results table and the return
    value, the same in a second run (the shares and the hash are unit tests of the runner)."""
    from airflow_provider_voxsms.sms.variants import Variants
    from airflow_provider_voxsms.storage.results import read_outcomes

    monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{tmp_path / 'voxsms.db'}")
    numbers = [f"44770091{i:04d}" for i in range(200)]
    texts = {"A": "{{ params.brand }}: hi {name}", "B": "{{ params.brand }} says {name}"}
    with DAG("voxsms_test_variants", schedule=None, params={"brand": "Acme"}) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=[{"phone": n, "name": f"N{i}"} for i, n in enumerate(numbers)],
            text=None,
            text_variants=texts,
            holdout=0.2,
            src_number="VoxDemo",
            results_conn_id="voxsms_db",
        )
    drawn = Variants.parse(texts, holdout=0.2, seed="voxsms_test_variants.send").assign(
        pd.Series(numbers)
    )
    expected = dict(zip(numbers, map(str, drawn), strict=True))
    wording = {"A": "Acme: hi N{}", "B": "Acme says N{}"}
    for run in (1, 2):
        ti = run_dag(dag)["send"]
        summary = xcom(ti)
        messages = voximplant_conn.state.messages_snapshot()[-summary["accepted"] :]
        texts_sent = {m["destination_number"]: m["text"] for m in messages}
        assert texts_sent == {
            n: wording[v].format(i) for i, (n, v) in enumerate(expected.items()) if v != "holdout"
        }, f"run {run}: each number its variant's text, rendered; the hold-out group nothing"
        shares = Counter(expected.values())
        assert summary["held_out"] == shares["holdout"] > 0
        assert summary["variants"]["A"] == {"recipients": shares["A"], "accepted": shares["A"]}
        accepted = read_outcomes(xcom(ti, "accepted_numbers"))  # with a table, its location
        assert dict(zip(accepted["destination_number"], accepted["variant"], strict=True)) == {
            n: v for n, v in expected.items() if v != "holdout"
        }
        rows = read_outcomes(summary["results"])
        by_number = dict(zip(rows["destination_number"], rows["variant"], strict=True))
        assert by_number == expected, "the results table names each number's variant"


# -- what the ledger and XComs keep ----------------------------------------------------------------


def test_opt_outs_can_come_from_an_xcomarg_of_a_dataframe(voximplant_conn, run_dag):
    with DAG("voxsms_test_opt_outs_frame", schedule=None) as dag:

        @task
        def opted_out() -> pd.DataFrame:
            return pd.DataFrame({"phone": ["+" + UK[1]]})

        A2PSendSmsOperator(
            task_id="send",
            recipients=UK[:3],
            text="Hello",
            src_number="VoxDemo",
            suppression_list=opted_out(),  # an XComArg of a DataFrame
        )
    summary = xcom(run_dag(dag)["send"])
    assert summary["suppressed"] == 1 and summary["accepted"] == 2
    assert (UK[1], "Hello") not in sent(voximplant_conn)


def test_a_number_sent_before_it_opted_out_stays_accepted_on_a_rerun(
    voximplant_conn, voxsms_db, run_dag
):
    """Opt-outs are applied after the ledger's resume: what an earlier try sent keeps its
    outcome (accepted, followed by delivery reports), and nothing is sent twice."""
    run_dag(one_task_dag("voxsms_test_opt_out_later", UK[:3], ledger_conn_id=voxsms_db))
    dag = one_task_dag(
        "voxsms_test_opt_out_later",
        UK[:4],
        ledger_conn_id=voxsms_db,
        suppression_list=[UK[0], UK[3]],
    )
    tis = run_dag(dag)  # the same DAG run again: the send ledger knows UK[0..2]
    summary = xcom(tis["send"])
    assert (summary["accepted"], summary["earlier"], summary["suppressed"]) == (3, 3, 1)
    adds_up(summary)
    assert sent(voximplant_conn) == Counter({(n, "Hello"): 1 for n in UK[:3]})
    assert UK[0] in set(xcom(tis["send"], "accepted_numbers")["destination_number"])


def test_an_opt_out_list_with_no_usable_number_fails_before_sending(voximplant_conn, run_dag):
    opt_outs = pd.DataFrame({"customer_id": ["c1", "c2"], "msisdn": UK[:2]})  # no phone column
    dag = one_task_dag("voxsms_test_opt_outs_unusable", UK[:3], suppression_list=opt_outs)
    assert run_dag(dag)["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


def test_outputs_past_the_xcom_size_warn_once(voximplant_conn, monkeypatch, capfd):
    import airflow_provider_voxsms.operators.a2p_sms as module

    monkeypatch.setattr(module, "XCOM_ROWS_WARNING", 2)

    class TI:
        def xcom_push(self, key, value):
            pass

    op = A2PSendSmsOperator(task_id="s", recipients=UK[:3], text="Hello", src_number="VoxDemo")
    op.execute({"ti": TI()})
    warnings = [line for line in capfd.readouterr().out.splitlines() if "metadata database" in line]
    assert len(warnings) == 1 and "'accepted_numbers': 3" in warnings[0]
