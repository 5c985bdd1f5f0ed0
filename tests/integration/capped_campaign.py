"""One capped campaign in its own process, for tests of frequency caps across processes.

Usage: python capped_campaign.py DAG_ID RUN_ID RANGES TEXT GO_FILE. Sends TEXT to the numbers
of RANGES (``3000-6000,0-3000``: ``number(3000)`` to ``number(5999)``, then the others, in that
order) with ``frequency_cap=(1, 24 h)`` on the ``voxsms_db`` ledger; it creates
``GO_FILE.DAG_ID.RUN_ID.ready`` when ready to send, and sends once GO_FILE exists (so that two
processes start sending at the same moment). Prints the task's summary as JSON on
the last line.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator


def number(i: int) -> str:
    return f"4474433{i:05d}"


@dataclass
class TI:
    """What ``execute()`` needs of a task instance: its identity and ``xcom_push``."""

    dag_id: str
    run_id: str
    task_id: str = "send"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def numbers(ranges: str) -> list[str]:
    """The numbers of ``a-b,c-d`` in that order."""
    bounds = [tuple(map(int, part.split("-"))) for part in ranges.split(",")]
    return [number(i) for start, end in bounds for i in range(start, end)]


def main(dag_id: str, run_id: str, ranges: str, text: str, go: Path) -> None:
    operator = A2PSendSmsOperator(
        task_id="send",
        recipients=numbers(ranges),
        text=text,
        src_number="VoxDemo",
        ledger_conn_id="voxsms_db",
        frequency_cap=(1, timedelta(hours=24)),
        max_concurrency=4,
        settle_delay_s=0.5,
    )
    Path(f"{go}.{dag_id}.{run_id}.ready").touch()
    while not go.exists():
        time.sleep(0.005)
    summary = operator.execute({"ti": TI(dag_id, run_id)})
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    dag_id, run_id, ranges, text, go = sys.argv[1:]
    main(dag_id, run_id, ranges, text, Path(go))
