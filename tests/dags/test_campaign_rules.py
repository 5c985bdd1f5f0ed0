"""Campaigns people are allowed to send, in real DAG runs against the emulator over HTTP:
per-row templates, opt-outs, send windows in each recipient's local time, a segment budget.

Windows are judged by ``airflow_provider_voxsms.sms.window.utc_now``, which these tests replace
with a clock set to a chosen moment, so no result depends on the machine's time of day.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest
from airflow.sdk import DAG, task
from dag_runs import xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.sql import db_api_hook

UK = [f"4474433322{i:02d}" for i in range(10, 16)]  # Europe/London (and the Crown dependencies)
NEW_YORK = ["12015550123", "12015550124"]  # America/New_York
SYDNEY = "61291234567"  # a Sydney landline: Australia/Sydney only
TOLL_FREE = "18005550199"  # NANP toll-free: every NANP zone, Guam to Newfoundland
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


def test_a_rendered_text_over_1600_characters_is_an_invalid_row_naming_its_length(
    voximplant_conn, run_dag
):
    rows = [{"phone": UK[0], "note": "x" * 1595}, {"phone": UK[1], "note": "short"}]
    tis = run_dag(one_task_dag("voxsms_test_template_long", rows, text="Note: {note}"))
    assert sent(voximplant_conn) == {(UK[1], "Note: short"): 1}
    reason = xcom(tis["send"], "failed_numbers")["error_description"].iloc[0]
    assert reason == "rendered text too long: 1601 characters (limit 1600)"


def test_a_placeholder_naming_no_column_fails_before_sending_listing_the_columns(
    voximplant_conn, run_dag
):
    rows = [{"phone": UK[0], "first_name": "Ann"}]
    tis = run_dag(one_task_dag("voxsms_test_template_missing", rows, text="Hi {firstname}"))
    assert tis["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


def test_a_placeholder_that_is_not_a_plain_name_is_refused_before_sending(voximplant_conn):
    from airflow.sdk.exceptions import AirflowFailException

    for text in ("Hi {name.upper}", "Hi {name[0]}", "Hi {name!r}", "Hi {name:>10}", "Hi {"):
        op = A2PSendSmsOperator(
            task_id="send", recipients=[{"phone": UK[0], "name": "x"}], text=text, src_number="S"
        )
        with pytest.raises(AirflowFailException, match=r"plain column name|brace"):
            op.execute({"ti": None})
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


# -- opt-outs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt_outs",
    [
        ["+44 7443 332211", "0044-7443-332213"],
        pd.Series(["07443 332211", "+447443332213"]),
        pd.DataFrame({"name": ["a", "b"], "phone": ["+44 7443 332211", "07443332213"]}),
        pd.DataFrame({"number": ["+44 7443 332211", "447443332213"]}),  # no phone: first column
    ],
    ids=["list", "series", "frame-phone-column", "frame-first-column"],
)
def test_opted_out_numbers_are_never_sent_whatever_their_spelling(
    voximplant_conn, run_dag, opt_outs
):
    recipients = ["07443332210", "07443332211", "+44 7443 332212", "07443332213", "nope"]
    dag = one_task_dag(
        "voxsms_test_opt_outs", recipients, default_region="GB", suppression_list=opt_outs
    )
    tis = run_dag(dag)
    assert set(sent(voximplant_conn)) == {(UK[0], "Hello"), (UK[2], "Hello")}
    summary = xcom(tis["send"])
    assert summary["suppressed"] == 2 and summary["accepted"] == 2 and summary["invalid"] == 1
    adds_up(summary)
    assert set(xcom(tis["send"], "failed_numbers")["stage"]) == {"validation"}


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


def test_only_recipients_inside_their_local_window_are_sent_the_rest_deferred(
    voximplant_conn, run_dag, monkeypatch
):
    # 14:30 UTC: 14:30 in London (inside 09-20), 09:30 in New York (inside), 01:30 next day in
    # Sydney (outside; opens 09:00 Sydney = 22:00 UTC), toll-free: inside only where every NANP
    # zone is (Guam is 00:30 the next day: outside).
    clock_at(monkeypatch, datetime(2026, 12, 1, 14, 30, tzinfo=UTC))
    recipients = [UK[0], NEW_YORK[0], SYDNEY, TOLL_FREE, "nope", UK[0]]
    dag = one_task_dag("voxsms_test_window", recipients, send_window=("09:00", "20:00"))
    tis = run_dag(dag)
    assert tis["send"].state == "success"
    assert set(sent(voximplant_conn)) == {(UK[0], "Hello"), (NEW_YORK[0], "Hello")}
    summary = xcom(tis["send"])
    assert summary["outside_window"] == 2 and summary["accepted"] == 2
    assert summary["invalid"] == 1 and summary["duplicates"] == 1
    adds_up(summary)
    deferred = xcom(tis["send"], "deferred_numbers").set_index("destination_number")
    assert list(deferred.columns) == ["time_zone", "next_window_start"]
    assert deferred.loc[SYDNEY, "time_zone"] == "Australia/Sydney"
    assert deferred.loc[SYDNEY, "next_window_start"] == "2026-12-01T22:00:00+00:00"
    zones = deferred.loc[TOLL_FREE, "time_zone"].split(", ")
    assert {"Pacific/Guam", "America/St_Johns", "Pacific/Honolulu"} <= set(zones)


def test_a_window_across_midnight(voximplant_conn, run_dag, monkeypatch):
    # 23:30 UTC: London 23:30 (inside 21:00-08:00), New York 18:30 (outside, opens 21:00 NY).
    clock_at(monkeypatch, datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    dag = one_task_dag(
        "voxsms_test_window_night", [UK[0], NEW_YORK[0]], send_window=("21:00", "08:00")
    )
    tis = run_dag(dag)
    assert set(sent(voximplant_conn)) == {(UK[0], "Hello")}
    deferred = xcom(tis["send"], "deferred_numbers")
    assert deferred.to_dict("records") == [
        {
            "destination_number": NEW_YORK[0],
            "time_zone": "America/New_York",
            "next_window_start": "2026-12-02T02:00:00+00:00",
        }
    ]


def test_a_number_with_no_known_zone_uses_window_timezone(voximplant_conn, run_dag, monkeypatch):
    # +882 16 is an international network: phonenumbers knows no zone for it.
    clock_at(monkeypatch, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    number = "882167890123"
    for zone, inside in (("UTC", True), ("Asia/Tokyo", False)):  # Tokyo: 21:00, outside
        voximplant_conn.state.reset()
        dag = one_task_dag(
            f"voxsms_test_window_fallback_{inside}",
            [number],
            send_window=("09:00", "20:00"),
            window_timezone=zone,
            number_check="possible",
        )
        tis = run_dag(dag)
        summary = xcom(tis["send"])
        assert (summary["accepted"], summary["outside_window"]) == (int(inside), int(not inside))
        if not inside:
            assert xcom(tis["send"], "deferred_numbers")["time_zone"].tolist() == ["Asia/Tokyo"]


def test_precedence_invalid_duplicate_suppressed_outside(voximplant_conn, run_dag, monkeypatch):
    clock_at(monkeypatch, datetime(2026, 12, 1, 3, 0, tzinfo=UTC))  # London 03:00: outside
    recipients = ["nope", UK[0], UK[0], UK[1], UK[2]]
    dag = one_task_dag(
        "voxsms_test_precedence",
        recipients,
        send_window=("09:00", "20:00"),
        suppression_list=[UK[0]],
        dry_run=True,
    )
    summary = xcom(run_dag(dag)["send"])
    assert (summary["invalid"], summary["duplicates"], summary["suppressed"]) == (1, 1, 1)
    assert summary["outside_window"] == 2 and summary["accepted"] == 0
    adds_up(summary)
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


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


def test_wait_mode_refuses_numbers_whose_zones_never_share_the_window(
    voximplant_conn, voxsms_db, run_dag, monkeypatch
):
    clock_at(monkeypatch, datetime(2026, 12, 1, 14, 0, tzinfo=UTC))
    dag = one_task_dag(
        "voxsms_test_window_never",
        [UK[0], TOLL_FREE],  # Guam to Newfoundland: 14.5 hours apart, a 3-hour window
        send_window=("09:00", "12:00"),
        outside_window="wait",
        ledger_conn_id=voxsms_db,
    )
    assert run_dag(dag)["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


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
    ],
)
def test_bad_window_and_budget_settings_are_refused_when_the_dag_is_parsed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        A2PSendSmsOperator(task_id="send", recipients=[], text="x", src_number="S", **kwargs)


# -- budget --------------------------------------------------------------------------------------


def test_a_segment_budget_refuses_to_start_and_sends_nothing(voximplant_conn, run_dag):
    rows = [{"phone": n, "name": "x" * 160} for n in UK[:4]]  # 165 GSM-7 characters: 2 segments
    over = run_dag(one_task_dag("voxsms_test_budget", rows, text="Hi {name}!!", max_segments=7))
    assert over["send"].state == "failed"
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0
    within = run_dag(
        one_task_dag("voxsms_test_budget_ok", rows, text="Hi {name}!!", max_segments=8)
    )
    summary = xcom(within["send"])
    assert summary["segments_planned"] == 8 and summary["accepted"] == 4


def test_the_dry_run_reports_segments_and_distinct_texts(voximplant_conn, run_dag):
    rows = [{"phone": n, "name": name} for n, name in zip(UK[:4], "ABAC", strict=True)]
    dag = one_task_dag("voxsms_test_dry_template", rows, text="Hi {name}", dry_run=True)
    summary = xcom(run_dag(dag)["send"])
    assert summary["dry_run"] and summary["distinct_texts"] == 3
    assert summary["segments_planned"] == 4 and summary["accepted"] == 0
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0


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


def test_template_edge_cases_empty_input_and_whole_floats_in_dicts(voximplant_conn):
    from dataclasses import dataclass, field

    @dataclass
    class TI:
        pushed: dict = field(default_factory=dict)

        def xcom_push(self, key, value):
            self.pushed[key] = value

    empty = A2PSendSmsOperator(task_id="s", recipients=[], text="Hi {name}", src_number="S")
    summary = empty.execute({"ti": TI()})
    assert summary["recipients"] == 0 and summary["accepted"] == 0
    rows = [{"phone": UK[0], "code": 1234.0}, {"phone": UK[1], "code": 7.5}]
    A2PSendSmsOperator(
        task_id="s", recipients=rows, text="Code {code}", src_number="VoxDemo"
    ).execute({"ti": TI()})
    assert set(sent(voximplant_conn)) == {(UK[0], "Code 1234"), (UK[1], "Code 7.5")}


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
