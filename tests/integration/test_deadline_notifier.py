"""VoximplantSmsNotifier as a deadline alert's AsyncCallback, through Airflow's own code.

``dag.test()`` creates the run's deadline rows but runs no scheduler loop, which is what
notices a missed deadline (and in Airflow 3.3.2 a run of a DAG with a deadline that succeeds
under ``dag.test()`` fails in ``DagRun.update_state``, which reads the DAG's alerts as ids; a
failed run keeps its deadline, as in a deployment). So the test takes the deployment's steps
itself: a real DAG run with a ``DeadlineAlert`` (its deadline already past), then what the
scheduler does with
the missed deadline (``Deadline.handle_miss``, which queues a ``CallbackTrigger`` row), then
what the triggerer does with that row (the trigger class from its classpath and decrypted
kwargs, ``run()`` on an event loop). The notifier is awaited there, over the async hook,
against the emulator over real HTTP.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference, task

from airflow_provider_voxsms.notifications.voximplant import VoximplantSmsNotifier

ON_CALL = ["+44 7443 332200", "447443332201", "not a number"]


def missed_deadline_triggers(dag_id: str) -> list:
    """The scheduler's step: each missed deadline of the DAG's runs queues its callback; the
    triggerer's step: each queued callback's trigger, built from its row."""
    from airflow._shared.module_loading import import_string
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        deadlines = session.scalars(
            select(Deadline)
            .join(DagRun, Deadline.dagrun_id == DagRun.id)
            .where(DagRun.dag_id == dag_id, ~Deadline.missed)
        ).all()
        assert deadlines, "dag.test() made no deadline row"
        for deadline in deadlines:
            deadline.handle_miss(session)
        rows = [deadline.callback.trigger for deadline in deadlines]
        return [import_string(row.classpath)(**row.kwargs) for row in rows]


async def run_trigger(trigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_a_missed_deadline_texts_the_on_call_numbers(voximplant_conn, run_dag):
    alert = DeadlineAlert(
        # The test run's logical date is 2026-01-01: its deadline has passed when it starts.
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(minutes=10),
        callback=AsyncCallback(
            VoximplantSmsNotifier,
            kwargs={"src_number": "VoxDemo", "numbers": ON_CALL, "default_region": "GB"},
        ),
    )
    with DAG("voxsms_test_deadline_alert", schedule=None, deadline=alert) as dag:

        @task(retries=0)
        def work():
            raise RuntimeError("the export is late")

        work()

    tis = run_dag(dag)
    assert tis["work"].state == "failed"
    assert voximplant_conn.state.messages_snapshot() == []  # nothing before the miss

    (trigger,) = missed_deadline_triggers(dag.dag_id)
    events = asyncio.run(run_trigger(trigger))

    assert events[-1]["state"] == "success", events
    messages = voximplant_conn.state.messages_snapshot()
    assert sorted(m["destination_number"] for m in messages) == ["447443332200", "447443332201"]
    run_id = tis["work"].run_id
    for message in messages:
        assert message["source_number"] == "VoxDemo"
        assert message["text"].startswith(
            f"Airflow: voxsms_test_deadline_alert run {run_id} missed its deadline ("
        ), message["text"]


def test_the_notifier_awaited_with_its_own_text(voximplant_conn):
    """As the triggerer's CallbackTrigger calls it: the class with the kwargs and context."""
    context = {"dag_run": {"dag_run_id": "r"}, "deadline": {"id": "x"}, "on_call": "447443332202"}
    notifier = VoximplantSmsNotifier(
        src_number="VoxDemo",
        numbers="{{ on_call }}",
        text="{{ dag_run.dag_run_id }} is late",
        context=context,
    )
    asyncio.run(_await(notifier))
    messages = voximplant_conn.state.messages_snapshot()
    assert [(m["destination_number"], m["text"]) for m in messages] == [
        ("447443332202", "r is late")
    ]


async def _await(notifier) -> None:
    await notifier
