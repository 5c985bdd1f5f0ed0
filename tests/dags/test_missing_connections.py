"""A ``*_conn_id`` naming no connection fails its task before any request, once, by name.

One ``dag.test()`` run with a task per parameter, each allowed two retries: every task fails
on its first try (no retry), the log names the parameter and says nothing was sent, and the
emulator gets no request at all.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator

NUMBERS = ["447443332210", "447443332211"]
SEND = {"recipients": NUMBERS, "text": "hi", "src_number": "VoxDemo"}
CASES = {
    "send_voximplant": (A2PSendSmsOperator, {**SEND, "voximplant_conn_id": "voxsms_no_api"}),
    "send_recipients": (
        A2PSendSmsOperator,
        {
            **SEND,
            "recipients": None,
            "recipients_sql": "SELECT phone FROM people",
            "recipients_conn_id": "voxsms_no_source",
        },
    ),
    "send_suppression": (
        A2PSendSmsOperator,
        {**SEND, "suppression_sql": "SELECT 1", "suppression_conn_id": "voxsms_no_optouts"},
    ),
    "send_results": (A2PSendSmsOperator, {**SEND, "results_conn_id": "voxsms_no_results"}),
    "send_ledger": (A2PSendSmsOperator, {**SEND, "ledger_conn_id": "voxsms_no_ledger"}),
    "report_voximplant": (
        A2PSmsDeliveryReportOperator,
        {"messages": [101, 102], "voximplant_conn_id": "voxsms_no_api", "timeout": 0},
    ),
    "report_table": (
        A2PSmsDeliveryReportOperator,
        {"messages": [101, 102], "report_conn_id": "voxsms_no_report", "timeout": 0},
    ),
}


def test_each_missing_connection_fails_its_task_once_by_name(voximplant_conn, run_dag, capsys):
    with DAG("voxsms_test_missing_connections", schedule=None) as dag:
        for task_id, (operator, kwargs) in CASES.items():
            operator(task_id=task_id, retries=2, retry_delay=timedelta(0), **kwargs)

    tis = run_dag(dag)
    assert {task_id: ti.state for task_id, ti in tis.items()} == dict.fromkeys(CASES, "failed")
    assert {task_id: ti.try_number for task_id, ti in tis.items()} == dict.fromkeys(CASES, 1)
    assert voximplant_conn.state.stats_snapshot()["requests"] == 0
    assert voximplant_conn.state.messages_snapshot() == []
    out = capsys.readouterr()
    log = out.out + out.err
    for _, kwargs in CASES.values():
        (parameter,) = (key for key in kwargs if key.endswith("_conn_id"))
        expected = f"{parameter}='{kwargs[parameter]}' names no Airflow connection, so nothing "
        assert expected + "was sent" in log, expected
