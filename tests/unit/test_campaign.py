"""PassSender and resume() against a fake API: every number settled, nothing sent twice."""

from __future__ import annotations

import time
from collections import Counter

import pandas as pd
import pytest
from sms_fakes import NUMBERS, SETTINGS, FakeApi, FakeLedger, accounted, every_nth, frame, once

from airflow_provider_voxsms.sms.campaign import CampaignSettings, PassSender
from airflow_provider_voxsms.sms.model import ACCEPTED, FAILED, IN_FLIGHT, CampaignReport, text_hash
from airflow_provider_voxsms.sms.resume import resume


def run_campaign(valid, api, settings, *, previous=None, ledger=None, **kwargs) -> CampaignReport:
    """One chunk sent and settled, as one report (what a one-chunk pass does)."""
    if previous is not None:
        ledger = FakeLedger(previous)
    sender = PassSender(api, settings, ledger=ledger, **kwargs)
    sent = sender.send(valid)
    settled = sender.settle()
    report = CampaignReport(outcomes=sent.outcomes + settled.outcomes)
    report.stopped_by = sender.stopped_by
    report.earlier = sent.earlier
    report.reconciled, report.resent = settled.reconciled, settled.resent
    held = [r.held for r in (sent, settled) if r.held is not None]
    report.held = pd.concat(held) if held else None
    return report


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
