"""The contact policy through the operator, over HTTP to the emulator: smart encoding as the
phone receives it, and a validity period that a retry after a top-up respects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_voxsms.errors import CampaignStoppedError
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator

UK = [f"4474433{i:05d}" for i in range(3_000)]


@dataclass
class TI:
    """What ``execute()`` needs of a task instance: its identity and ``xcom_push``."""

    dag_id: str = "voxsms_policy"
    run_id: str = "manual__1"
    task_id: str = "send"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_smart_encoding_arrives_as_gsm7_in_one_fragment_each(voximplant_conn):
    rows = [
        {"phone": n, "name": name} for n, name in zip(UK[:3], ["Ann", "Bob", "Cy"], strict=True)
    ]
    operator = A2PSendSmsOperator(
        task_id="send",
        recipients=rows,
        text="Hi {name} \u2014 it\u2019s \u201cready\u201d\u2026 see\u00a0you",
        src_number="VoxDemo",
        smart_encoding=True,
    )
    summary = operator.execute({"ti": TI()})
    messages = voximplant_conn.state.messages_snapshot()
    assert sorted(m["text"] for m in messages) == [
        f'Hi {name} - it\'s "ready"... see you' for name in ("Ann", "Bob", "Cy")
    ]
    assert {m["fragments"] for m in messages} == {1}
    assert summary["smart_encoded"] == 3 and summary["fragments"] == 3


def test_a_retry_after_the_validity_period_sends_nothing_and_succeeds(
    voximplant_conn, voxsms_db, monkeypatch
):
    """3,000 numbers, the money out after 1,000, validity_period 15 s, the retry 20 s after
    the campaign's first start: it sends nothing; accepted 1,000, expired 2,000, success."""
    voximplant_conn.state.set_faults(insufficient_money_after=1_000)

    def operator() -> A2PSendSmsOperator:
        return A2PSendSmsOperator(
            task_id="send",
            recipients=UK,
            text="Your order has shipped",
            src_number="VoxDemo",
            ledger_conn_id=voxsms_db,
            validity_period=15,
            max_concurrency=1,
        )

    ti = TI()
    with pytest.raises(CampaignStoppedError):
        operator().execute({"ti": ti})
    assert voximplant_conn.state.stats_snapshot()["accepted"] == 1_000
    voximplant_conn.state.set_faults(insufficient_money_after=None)  # topped up
    later = datetime.now(UTC) + timedelta(seconds=20)
    monkeypatch.setattr("airflow_provider_voxsms.sms.window.utc_now", lambda: later)
    summary = operator().execute({"ti": ti})
    assert (summary["accepted"], summary["expired"], summary["earlier"]) == (1_000, 2_000, 1_000)
    assert voximplant_conn.state.stats_snapshot()["accepted"] == 1_000, "nothing more was sent"
    assert set(ti.pushed["failed_numbers"]["stage"]) == {"expired"}
