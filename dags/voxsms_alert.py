"""An SMS to the on-call phone when a task fails, with VoximplantSmsNotifier.

The ``flaky`` task fails on purpose so that the alert can be seen at the emulator.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

from airflow_provider_voxsms.notifications.voximplant import VoximplantSmsNotifier

sms_on_call = VoximplantSmsNotifier(
    src_number="VoxDemo",
    numbers=["{{ params.on_call }}"],
    text="Airflow alert: {{ ti.dag_id }}.{{ ti.task_id }} failed (run {{ run_id }}).",
)


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["voxsms", "example"],
    params={"on_call": Param("+44 7443 332200", type="string")},
)
def voxsms_alert():
    @task(on_failure_callback=sms_on_call, retries=0)
    def flaky() -> None:
        raise RuntimeError("This task fails on purpose, to show the SMS alert.")

    flaky()


voxsms_alert()
