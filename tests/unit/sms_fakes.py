"""Fakes of the world a campaign talks to: the API (with faults and a history), the ledger and
the sink, for unit tests of the sending and the runner."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pandas as pd

from airflow_provider_voxsms.errors import (
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.sms.campaign import CampaignSettings
from airflow_provider_voxsms.sms.model import A2PSendSmsResponse
from airflow_provider_voxsms.sms.segments import count_segments

NUMBERS = [f"4474433{i:05d}" for i in range(250)]
SETTINGS = CampaignSettings(src_number="VoxDemo", settle_delay_s=0.0, max_concurrency=4)


class FakeApi:
    """Sends and answers history like Voximplant; ``faults`` decides per request what goes wrong:
    a callable (call number, numbers) -> None or one of "processed_then_500", "reset",
    "throttled" (not processed), "money"."""

    def __init__(self, fault=None, history_fails=False):
        self.fault, self.history_fails = fault, history_fails
        self.messages: list[dict] = []
        self.calls = 0
        self.history_calls = 0
        # The runner sends from several threads at once; message ids are unique, as the API's
        # are (unlocked, two requests could number their messages alike: a number then seemed
        # never to have arrived, and was sent again).
        self._lock = threading.Lock()

    def check_config(self):
        pass

    def a2p_send_sms(self, src_number, dst_numbers, text, store_body=False):
        with self._lock:
            return self._send(src_number, dst_numbers, text)

    def _send(self, src_number, dst_numbers, text):
        self.calls += 1
        fault = self.fault(self.calls, dst_numbers) if self.fault else None
        if fault == "reset":
            raise VoximplantTransportError("A2PSendSms", "reset", maybe_processed=True)
        if fault == "throttled":
            raise VoximplantHttpError("A2PSendSms", 503, "busy")
        if fault == "refused":
            raise VoximplantTransportError("A2PSendSms", "refused", maybe_processed=False)
        if fault == "money":
            raise VoximplantApiError("A2PSendSms", 127, "Insufficient money")
        result, segments = [], count_segments(text).count
        for number in dst_numbers:
            message_id = 1000 + len(self.messages)
            self.messages.append(
                {
                    "message_id": message_id,
                    "source_number": src_number,
                    "destination_number": number,
                    "text": text,
                    "fragments": segments,
                    "processing_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
            result.append({"message_id": message_id, "destination_number": number})
        if fault == "processed_then_500":
            raise VoximplantHttpError("A2PSendSms", 500, "oops")
        return A2PSendSmsResponse(result=result, failed=[], fragments_count=segments)

    def a2p_get_sms_history(self, **filters):
        with self._lock:
            return self._history(filters)

    def _history(self, filters):
        self.history_calls += 1
        if self.history_fails:
            raise VoximplantHttpError("A2PGetSmsHistory", 502, "bad gateway")
        rows = [
            m
            for m in self.messages
            if filters.get("destination_number", m["destination_number"]) == m["destination_number"]
        ]
        page = rows[filters["offset"] : filters["offset"] + filters["count"]]
        return {"result": page, "total_count": len(rows)}

    def sent(self) -> Counter:
        return Counter(m["destination_number"] for m in self.messages)


class FakeLedger:
    """Claims everything; ``previous``: what earlier tries knew (as ``resume`` reads it)."""

    def __init__(self, previous=None):
        self.claims, self.records, self.previous = [], [], previous

    def claim(self, batch):
        self.claims.append(batch)
        return batch

    def record(self, outcome):
        self.records.append(outcome)

    def earlier(self, rows):
        if self.previous is None:
            return pd.DataFrame()
        return self.previous


class ListSink:
    """Keeps the outcome rows a runner writes."""

    def __init__(self):
        self.frames = []

    def write(self, rows):
        self.frames.append(rows)

    @property
    def rows(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True)


def frame(numbers=NUMBERS, text="hi") -> pd.DataFrame:
    return pd.DataFrame({"phone": numbers, "text": text})


def every_nth(n, fault):
    return lambda call, numbers: fault if call % n == 0 else None


def once(call_number, fault):
    return lambda call, numbers: fault if call == call_number else None


def accounted(report) -> Counter:
    kinds = ("accepted", "failed", "not_sent", "unknown")
    return Counter({k: report.total(k) for k in kinds})
