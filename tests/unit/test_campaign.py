"""run_campaign() and resume() against a fake API: every number settled, nothing sent twice."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest

from airflow_provider_voxsms.errors import (
    VoximplantApiError,
    VoximplantHttpError,
    VoximplantTransportError,
)
from airflow_provider_voxsms.sms.campaign import CampaignSettings, run_campaign
from airflow_provider_voxsms.sms.model import (
    ACCEPTED,
    FAILED,
    IN_FLIGHT,
    A2PSendSmsResponse,
    text_hash,
)
from airflow_provider_voxsms.sms.resume import resume

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

    def a2p_send_sms(self, src_number, dst_numbers, text, store_body=False):
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
        result = []
        for number in dst_numbers:
            message_id = 1000 + len(self.messages)
            self.messages.append(
                {
                    "message_id": message_id,
                    "source_number": src_number,
                    "destination_number": number,
                    "processing_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
            result.append({"message_id": message_id, "destination_number": number})
        if fault == "processed_then_500":
            raise VoximplantHttpError("A2PSendSms", 500, "oops")
        return A2PSendSmsResponse(result=result, failed=[], fragments_count=1)

    def a2p_get_sms_history(self, **filters):
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
    def __init__(self):
        self.claims, self.records = [], []

    def claim(self, batch):
        self.claims.append(batch)
        return True

    def record(self, outcome):
        self.records.append(outcome)


def frame(numbers=NUMBERS, text="hi") -> pd.DataFrame:
    return pd.DataFrame({"phone": numbers, "text": text})


def every_nth(n, fault):
    return lambda call, numbers: fault if call % n == 0 else None


def accounted(report) -> Counter:
    kinds = ("accepted", "failed", "not_sent", "unknown")
    return Counter({k: report.total(k) for k in kinds})


@pytest.mark.parametrize("fault", ["processed_then_500", "reset"])
def test_ambiguous_answers_are_settled_in_the_run(fault):
    api = FakeApi(every_nth(2, fault) if fault == "processed_then_500" else once(2, fault))
    report = run_campaign(frame(), api, SETTINGS)
    assert report.total("accepted") == len(NUMBERS) and report.total("unknown") == 0
    assert set(api.sent().values()) == {1} and set(api.sent()) == set(NUMBERS)
    if fault == "processed_then_500":
        assert report.reconciled > 0 and report.resent == 0, "found in history, not re-sent"
    else:
        assert report.reconciled == 0 and report.resent == 100, "never arrived: sent again"


def once(call_number, fault):
    return lambda call, numbers: fault if call == call_number else None


def test_throttled_past_the_hooks_attempts_is_sent_again_after_the_delay():
    waits = []
    api = FakeApi(once(1, "throttled"))
    settings = CampaignSettings(src_number="VoxDemo", settle_delay_s=7.0, max_concurrency=1)
    report = run_campaign(frame(), api, settings, sleep=waits.append)
    assert report.total("accepted") == len(NUMBERS) and report.resent == 100
    assert waits == [7.0], "one back-off of settle_delay_s"
    assert set(api.sent().values()) == {1}


def test_what_stays_open_after_the_last_round_is_unknown_and_counts_add_up():
    api = FakeApi(lambda call, numbers: "reset" if "447443300000" in numbers else None)
    report = run_campaign(
        frame(), api, CampaignSettings("VoxDemo", settle_delay_s=0, settle_rounds=2)
    )
    assert report.total("unknown") == 100 and report.resent == 200, "two rounds, then unknown"
    assert sum(accounted(report).values()) == len(NUMBERS)


def test_a_history_that_cannot_be_read_leaves_numbers_unknown():
    api = FakeApi(once(1, "processed_then_500"), history_fails=True)
    report = run_campaign(frame(), api, SETTINGS)
    assert report.total("unknown") == 100 and report.resent == 0
    assert sum(accounted(report).values()) == len(NUMBERS)


def test_a_stopped_run_does_not_settle_or_resend():
    api = FakeApi(lambda call, numbers: "money" if call >= 2 else None)
    report = run_campaign(frame(), api, CampaignSettings("VoxDemo", max_concurrency=1))
    assert report.stopped_by.code == 127 and api.history_calls == 0 and report.resent == 0
    assert accounted(report) == Counter(accepted=100, not_sent=150, failed=0, unknown=0)


def test_the_ledger_sees_every_claim_and_the_history_credit():
    ledger = FakeLedger()
    api = FakeApi(once(1, "processed_then_500"))
    report = run_campaign(frame(), api, SETTINGS, ledger=ledger)
    assert report.reconciled == 100
    assert sum(len(b.numbers) for b in ledger.claims) == len(NUMBERS), "claimed once each"
    credited = [o for o in ledger.records if o.accepted and o.batch.index == -1]
    assert sum(len(o.accepted) for o in credited) == 100


def previous(rows, claimed_ago_s: float = 5.0) -> pd.DataFrame:
    columns = ["destination_number", "status", "message_id", "error_code", "error_description"]
    data = pd.DataFrame(rows, columns=columns)
    data["text_hash"] = text_hash("hi")
    data["claimed_at"] = time.time() - claimed_ago_s
    data["message_id"] = data["message_id"].astype("Int64")
    data["error_code"] = data["error_code"].astype("Int64")
    return data.set_index(data["destination_number"] + data["text_hash"])  # as the ledger does


def test_resume_keeps_earlier_outcomes_with_their_descriptions_and_opens_the_rest():
    earlier = previous(
        [
            (NUMBERS[0], ACCEPTED, 55, None, None),
            (NUMBERS[1], FAILED, None, 509, "A2P SMS disabled"),
            (NUMBERS[2], IN_FLIGHT, None, None, None),
        ]
    )
    resumed = resume(frame(NUMBERS[:5]), earlier, settle_delay_s=5)
    assert resumed.settled.accepted == [(NUMBERS[0], 55)]
    assert resumed.settled.failed == [(NUMBERS[1], 509, "A2P SMS disabled")]
    (open_number,) = resumed.open_numbers
    assert open_number.number == NUMBERS[2] and open_number.ready_at == open_number.since + 5
    assert list(resumed.to_send["phone"]) == NUMBERS[3:5]


def test_a_retry_settles_what_an_earlier_try_left_in_flight_before_sending_it():
    api = FakeApi()
    api.a2p_send_sms("VoxDemo", [NUMBERS[0]], "hi")  # the earlier try's request went out
    earlier = previous([(n, IN_FLIGHT, None, None, None) for n in NUMBERS[:2]])
    report = run_campaign(frame(NUMBERS[:3]), api, SETTINGS, previous=earlier)
    assert report.reconciled == 1 and report.resent == 1
    assert set(api.sent().values()) == {1} and report.total("accepted") == 3


def test_no_connection_in_a_later_round_is_sent_again_not_a_wrong_host():
    """The API answered in the first round; a connection refused in the second is an outage,
    so those numbers wait for the next round instead of stopping the run as a wrong host."""

    def fault(call, numbers):
        return "throttled" if call == 1 else ("refused" if call == 4 else None)

    api = FakeApi(fault)
    report = run_campaign(
        frame(), api, CampaignSettings("VoxDemo", settle_delay_s=0, max_concurrency=1)
    )
    assert report.stopped_by is None and report.total("accepted") == len(NUMBERS)
    assert set(api.sent().values()) == {1}


def test_resume_tells_texts_apart_when_the_ledger_keyed_one_text_by_number():
    """The ledger indexes a one-text campaign by number; a retry whose rows now carry other
    texts must still compare number and text."""
    earlier = previous([(NUMBERS[0], ACCEPTED, 55, None, None)])  # claimed with text "hi"
    earlier = earlier.set_index(pd.Index(earlier["destination_number"], name="destination_number"))
    both = pd.DataFrame({"phone": [NUMBERS[0], NUMBERS[0]], "text": ["hi", "bye"]})
    resumed = resume(both, earlier, settle_delay_s=0)
    assert resumed.settled.accepted == [(NUMBERS[0], 55)]
    assert resumed.to_send["text"].tolist() == ["bye"], "the other text is still to send"
    only_other = resume(frame([NUMBERS[0]], text="bye"), earlier, settle_delay_s=0)
    assert only_other.settled is None and len(only_other.to_send) == 1


def test_hold_keeps_rows_back_and_judges_a_settle_rounds_re_sends_when_they_go():
    """The first request's numbers never arrived (reset); by the settle round their window
    has closed, so they are held back (``report.held``), not re-sent; held rows from the start
    are never sent; the counts cover every row."""
    api = FakeApi(once(1, "reset"))
    closed = []  # set once the first pass is planned: the window closes before the re-send

    def hold(rows):
        mask = rows["phone"].isin(NUMBERS[200:]).to_numpy()
        if closed:
            mask = mask | True
        closed.append(True)
        return mask

    settings = CampaignSettings(src_number="VoxDemo", settle_delay_s=0.0, max_concurrency=1)
    report = run_campaign(frame(), api, settings, hold=hold)
    held = set(report.held["phone"])
    assert set(NUMBERS[200:]) <= held and set(NUMBERS[:100]) <= held
    assert report.resent == 0 and set(api.sent()) == set(NUMBERS[100:200])
    assert report.total("accepted") + len(report.held) == len(NUMBERS)
