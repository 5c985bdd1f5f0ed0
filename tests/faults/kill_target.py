"""A campaign DAG run in a child process, so that a test can SIGKILL it mid-run and run it again.

Usage: python kill_target.py N_NUMBERS. Prints the task's summary as JSON on the last line.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for dag_runs

from airflow.sdk import DAG
from dag_runs import run_dag_once, xcom

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator


def main(count: int) -> None:
    with DAG("voxsms_fault_sigkill", schedule=None) as dag:
        A2PSendSmsOperator(
            task_id="send",
            recipients=[f"4474400{i:05d}" for i in range(count)],
            text="Killed mid-run",
            src_number="VoxDemo",
            ledger_conn_id="voxsms_db",
            max_concurrency=2,
            settle_delay_s=1.0,
            retry_delay=timedelta(0),
        )
    tis = run_dag_once(dag)
    print(json.dumps(xcom(tis["send"])))


if __name__ == "__main__":
    main(int(sys.argv[1]))
