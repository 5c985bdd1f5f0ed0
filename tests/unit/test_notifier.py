"""VoximplantSmsNotifier: templated numbers are rendered first, then split, then sent."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.sdk import DAG

from airflow_provider_voxsms.notifications.voximplant import VoximplantSmsNotifier, split_numbers

A, B, C = "447443332200", "447443332201", "447443332202"


def alert(numbers, *, native: bool = False, **params) -> dict:
    """Call the notifier as a task's callback does: with a context holding the DAG and params."""
    dag = DAG(
        "notifier_test",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        render_template_as_native_obj=native,
    )
    notifier = VoximplantSmsNotifier(
        src_number="{{ params.sender }}", numbers=numbers, text="{{ params.team }}: task failed"
    )
    context = {
        "dag": dag,
        "run_id": "manual__2026-01-01",
        "params": {"sender": "VoxDemo", "team": "Data", **params},
    }
    notifier(context)  # BaseNotifier.__call__: render_template_fields(context), then notify
    return notifier


def sent(server) -> list[tuple[str, str, str]]:
    return sorted(
        (m["destination_number"], m["source_number"], m["text"])
        for m in server.state.messages_snapshot()
    )


def test_numbers_is_a_template_field_kept_as_given_until_rendered():
    notifier = VoximplantSmsNotifier(src_number="VoxDemo", numbers="{{ params.on_call }}")
    assert "numbers" in notifier.template_fields
    assert notifier.numbers == "{{ params.on_call }}"


def test_a_templated_string_is_one_number_not_its_characters(voximplant_conn):
    notifier = alert("{{ params.on_call }}", on_call="+44 7443 332200")
    assert notifier.numbers == "+44 7443 332200"  # rendered in place, as Airflow does
    assert sent(voximplant_conn) == [(A, "VoxDemo", "Data: task failed")]


@pytest.mark.parametrize("on_call", [f"{A},{B}", f" {A} ; {B};", f"+{A}, 00{B}"])
def test_a_rendered_string_is_split_at_commas_and_semicolons(voximplant_conn, on_call):
    alert("{{ params.on_call }}", on_call=on_call)
    assert [number for number, _, _ in sent(voximplant_conn)] == [A, B]


@pytest.mark.parametrize("native", [False, True])
def test_a_templated_list_param_sends_to_each_number(voximplant_conn, native):
    """Jinja's default output is the list's repr; a native-object DAG renders the list itself."""
    alert("{{ params.on_call }}", native=native, on_call=[A, B])
    assert [number for number, _, _ in sent(voximplant_conn)] == [A, B]


def test_a_list_renders_each_item(voximplant_conn):
    alert(["{{ params.primary }}", "{{ params.backup }}", C], primary=A, backup=f"{B};{A}")
    assert [number for number, _, _ in sent(voximplant_conn)] == [A, B, C]  # A once


def test_split_numbers():
    assert split_numbers(f"{A}") == [A]
    assert split_numbers(f"['{A}', '{B}']") == [A, B]
    assert split_numbers((A, 447443332201)) == [A, 447443332201]
    assert split_numbers(447443332201) == [447443332201]
    assert split_numbers(" ; ,") == []


@pytest.mark.parametrize("mode", ["masked", "full"])
def test_the_alerts_log_masks_numbers_unless_log_numbers_is_full(
    voximplant_conn, caplog, capfd, mode
):
    """An invalid number and one the API refuses are logged: by default as ``+44 ****** NN``."""
    voximplant_conn.state.set_faults(blocked_numbers={B})
    notifier = VoximplantSmsNotifier(
        src_number="VoxDemo", numbers=[A, B, "+44 7443 3322"], text="down", log_numbers=mode
    )
    with caplog.at_level("INFO"):
        notifier({"run_id": "r", "params": {}})
    logged = [r.getMessage() for r in caplog.records] + capfd.readouterr().out.splitlines()
    lines = "\n".join(line for line in logged if "Alert" in line)  # structlog: on stdout
    assert (
        "Alert not sent to" in lines
        and f"Alert to {'+44 ******** 01' if mode == 'masked' else B} failed: error 509" in lines
    )
    if mode == "masked":
        assert "7443332201" not in lines and "7443 3322" not in lines
        assert "'+44 ****** 22'" in lines
    else:
        assert "'+44 7443 3322'" in lines


def test_the_notifier_refuses_an_unknown_log_numbers_mode():
    with pytest.raises(ValueError, match="log_numbers is one of"):
        VoximplantSmsNotifier(src_number="VoxDemo", numbers=[A], log_numbers="partial")
