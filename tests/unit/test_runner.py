"""CampaignRunner: every campaign rule over a fake API, in milliseconds.

Templates, opt-outs, send windows (at a fixed clock), guards, dry runs, streaming across
chunks, settling once per pass, stops and the count identity. The Airflow seams (Jinja,
XComs, deferral, the ledger's tables) are tested through DAG runs in tests/dags.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sms_fakes import FakeApi, FakeLedger, ListSink, every_nth

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.campaign import CampaignSettings
from airflow_provider_voxsms.sms.model import ACCEPTED, Batch, text_hash
from airflow_provider_voxsms.sms.report import OUTCOME_SUMMARY_KEYS, xcom_frames
from airflow_provider_voxsms.sms.runner import CampaignRunner, RunnerSettings
from airflow_provider_voxsms.sms.suppression import opt_outs
from airflow_provider_voxsms.sms.variants import HOLDOUT, Variants
from airflow_provider_voxsms.sms.window import SendWindow

UK = [f"4474433322{i:02d}" for i in range(10, 16)]  # Europe/London (and the Crown dependencies)
NEW_YORK = ["12015550123", "12015550124"]  # America/New_York
SYDNEY = "61291234567"  # a Sydney landline: Australia/Sydney only
TOLL_FREE = "18005550199"  # NANP toll-free: every NANP zone, Guam to Newfoundland
COUNTS = (
    "accepted",
    "failed",
    "not_sent",
    "unknown",
    "capped",
    "expired",
    "held_out",
    "invalid",
    "duplicates",
    "suppressed",
    "outside_window",
)
SENDING = CampaignSettings("VoxDemo", settle_delay_s=0.0, max_concurrency=2)
FAST = CampaignSettings("VoxDemo", settle_delay_s=0.0, max_concurrency=4, progress_interval_s=60)


def adds_up(summary: dict, sink: ListSink | None = None) -> None:
    assert sum(summary[k] for k in COUNTS) == summary["recipients"], summary
    if sink is not None and sink.frames:
        assert len(sink.rows) == summary["recipients"], "one outcome row per input row"


def run(
    recipients,
    *,
    api=None,
    text="Hello",
    streamed=False,
    at=None,
    window=None,
    fallback="UTC",
    suppression=None,
    ledger=None,
    sleep=None,
    sending=SENDING,
    **options,
):
    """One pass over ``recipients`` (one chunk, or a list of chunks with ``streamed``)."""
    api = api or FakeApi()
    sink = ListSink()
    settings = RunnerSettings(
        sending=sending,
        text=text,
        window=SendWindow.parse(window, fallback) if window else None,
        **options,
    )
    runner = CampaignRunner(
        settings,
        api=api,
        sink=sink,
        ledger=ledger,
        opted_out=opt_outs([suppression], default_region=options.get("default_region")),
        clock=(lambda: at) if at else datetime.now,
        sleep=sleep or (lambda s: None),
    )
    chunks = recipients if streamed else [recipients]
    result = runner.run(lambda: iter(chunks), streamed=streamed)
    return result, api, sink


def sent(api: FakeApi) -> Counter:
    return Counter((m["destination_number"], m["text"]) for m in api.messages)


# -- templates -----------------------------------------------------------------------------------


def test_each_row_gets_its_own_rendered_text_and_equal_texts_share_requests():
    rows = pd.DataFrame(
        {
            "phone": UK[:5],
            "first_name": ["Ann", "Bob", "Ann", "", "Dee"],
            "code": [1234.0, 99.0, 1234.0, 5.0, None],  # a CSV column with a gap: float
        }
    )
    result, api, sink = run(rows, text="Hi {first_name}, your code is {code}.")
    assert sent(api) == {
        (UK[0], "Hi Ann, your code is 1234."): 1,
        (UK[1], "Hi Bob, your code is 99."): 1,
        (UK[2], "Hi Ann, your code is 1234."): 1,
    }
    summary = result.summary
    assert summary["distinct_texts"] == 2 and summary["batches"] == 2, "equal texts share"
    assert summary["accepted"] == 3 and summary["invalid"] == 2
    adds_up(summary, sink)
    invalid = sink.rows[sink.rows["outcome"] == "invalid"]
    assert dict(zip(invalid["destination_number"], invalid["reason"], strict=True)) == {
        UK[3]: "placeholder {first_name} is empty",
        UK[4]: "placeholder {code} is empty",
    }


def test_a_rendered_text_over_1600_characters_is_an_invalid_row_naming_its_length():
    rows = [{"phone": UK[0], "note": "x" * 1595}, {"phone": UK[1], "note": "short"}]
    _, api, sink = run(rows, text="Note: {note}")
    assert sent(api) == {(UK[1], "Note: short"): 1}
    reason = sink.rows.set_index("outcome").loc["invalid", "reason"]
    assert reason == "rendered text too long: 1601 characters (limit 1600)"


@pytest.mark.parametrize(
    "text",
    ["Hi {firstname}", "Hi {name.upper}", "Hi {name[0]}", "Hi {name!r}", "Hi {name:>10}", "Hi {"],
)
def test_a_placeholder_that_names_no_column_or_is_not_a_plain_name_fails_before_sending(text):
    api = FakeApi()
    with pytest.raises(RecipientsError, match=r"plain column name|brace|first_name|column"):
        run([{"phone": UK[0], "name": "x"}], api=api, text=text)
    assert api.calls == 0


def test_template_edge_cases_empty_input_and_whole_floats_in_dicts():
    result, api, _ = run([], text="Hi {name}")
    assert result.summary["recipients"] == 0 and api.calls == 0
    rows = [{"phone": UK[0], "code": 1234.0}, {"phone": UK[1], "code": 7.5}]
    _, api, _ = run(rows, text="Code {code}")
    assert set(sent(api)) == {(UK[0], "Code 1234"), (UK[1], "Code 7.5")}


# -- opt-outs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suppression",
    [
        ["+44 7443 332211", "0044-7443-332213"],
        pd.Series(["07443 332211", "+447443332213"]),
        pd.DataFrame({"name": ["a", "b"], "phone": ["+44 7443 332211", "07443332213"]}),
        pd.DataFrame({"number": ["+44 7443 332211", "447443332213"]}),  # no phone: first column
    ],
    ids=["list", "series", "frame-phone-column", "frame-first-column"],
)
def test_opted_out_numbers_are_never_sent_whatever_their_spelling(suppression):
    recipients = ["07443332210", "07443332211", "+44 7443 332212", "07443332213", "nope"]
    result, api, sink = run(recipients, default_region="GB", suppression=suppression)
    assert set(sent(api)) == {(UK[0], "Hello"), (UK[2], "Hello")}
    summary = result.summary
    assert summary["suppressed"] == 2 and summary["accepted"] == 2 and summary["invalid"] == 1
    adds_up(summary, sink)
    suppressed = sink.rows[sink.rows["outcome"] == "suppressed"]
    assert set(suppressed["input_number"]) == {"07443332211", "07443332213"}, "as written"


def test_a_number_sent_before_it_opted_out_stays_accepted_on_a_rerun():
    """Opt-outs apply after the ledger's resume: what an earlier try sent keeps its outcome."""
    earlier = pd.DataFrame(
        {
            "destination_number": UK[:3],
            "text_hash": text_hash("Hello"),
            "status": ACCEPTED,
            "message_id": pd.array([11, 12, 13], dtype="Int64"),
            "error_code": pd.array([None] * 3, dtype="Int64"),
            "error_description": None,
            "claimed_at": 0.0,
        }
    )
    earlier = earlier.set_index(pd.Index(earlier["destination_number"], name="destination_number"))
    result, api, sink = run(UK[:4], ledger=FakeLedger(earlier), suppression=[UK[0], UK[3]])
    summary = result.summary
    assert (summary["accepted"], summary["earlier"], summary["suppressed"]) == (3, 3, 1)
    assert api.calls == 0 and set(sink.rows.query("outcome == 'accepted'").message_id) == {
        11,
        12,
        13,
    }
    adds_up(summary, sink)


def test_numbers_the_ledger_refuses_at_their_claim_are_capped_not_sent():
    """A frequency cap is judged when a number is claimed: the ledger claims the rest of the
    batch, and the refused numbers end ``capped`` (in the failed numbers, stage ``capped``)."""

    class CappingLedger(FakeLedger):
        def claim(self, batch):
            self.claims.append(batch)
            return Batch(
                batch.index, batch.text, tuple(n for n in batch.numbers if n not in UK[:2])
            )

    result, api, sink = run(UK[:4], ledger=CappingLedger())
    assert set(sent(api)) == {(UK[2], "Hello"), (UK[3], "Hello")}
    summary = result.summary
    assert (summary["accepted"], summary["capped"]) == (2, 2)
    adds_up(summary, sink)
    failed = xcom_frames(sink.rows)["failed_numbers"]
    assert set(failed["stage"]) == {"capped"} and set(failed["destination_number"]) == set(UK[:2])
    all_capped, api, _ = run(UK[:2], ledger=CappingLedger())
    assert all_capped.summary["capped"] == 2 and api.calls == 0


def test_a_retry_after_the_validity_period_sends_nothing_and_succeeds_with_the_counts():
    """3,000 numbers, 1,000 accepted by the first try, the retry 20 s after the campaign's
    first start with a validity period of 15 s: the rest expire, none is sent."""
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ledger = FakeLedger(earlier_frame(numbers(1000), "Hello"))
    ledger.started_at = start
    result, api, sink = run(
        numbers(3000), ledger=ledger, at=start + timedelta(seconds=20), validity_s=15
    )
    summary = result.summary
    assert (summary["accepted"], summary["expired"], summary["earlier"]) == (1000, 2000, 1000)
    assert api.calls == 0 and result.stopped_by is None
    adds_up(summary, sink)
    assert set(xcom_frames(sink.rows)["failed_numbers"]["stage"]) == {"expired"}


def test_a_settle_re_send_after_the_validity_period_expires_instead_of_going_out():
    moments = iter([datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)] * 2)  # start, first batch
    late = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
    api = FakeApi(lambda call, batch: "reset" if call == 1 else None)  # never arrived
    sink = ListSink()
    settings_ = RunnerSettings(SENDING, text="Hello", validity_s=15)
    runner = CampaignRunner(
        settings_, api=api, sink=sink, clock=lambda: next(moments, late), sleep=lambda s: None
    )
    result = runner.run(lambda: iter([UK[:3]]), streamed=False)
    assert api.sent() == Counter() and result.summary["expired"] == 3
    adds_up(result.summary, sink)


def earlier_frame(accepted: list[str], text: str) -> pd.DataFrame:
    """What a ledger knows when an earlier try had these numbers accepted."""
    frame = pd.DataFrame(
        {
            "destination_number": accepted,
            "text_hash": text_hash(text),
            "status": ACCEPTED,
            "message_id": pd.array(range(1, len(accepted) + 1), dtype="Int64"),
            "error_code": pd.array([None] * len(accepted), dtype="Int64"),
            "error_description": None,
            "claimed_at": 0.0,
        }
    )
    return frame.set_index(pd.Index(frame["destination_number"], name="destination_number"))


def test_variants_and_a_holdout_group_keep_each_number_in_its_variant_across_runs():
    """10,000 numbers, two templated variants, holdout 0.2, two runs: each number gets its
    variant's text with its values, the same in both runs; the hold-out group gets nothing;
    shares within 3 points of 40/40/20; rows and the summary name the variants."""
    rows = pd.DataFrame({"phone": numbers(10_000), "name": [f"n{i}" for i in range(10_000)]})
    texts = {"A": "Hi {name}, 10% off", "B": "Hello {name}: free delivery"}
    variants = Variants.parse(texts, holdout=0.2, seed="dag.send")
    runs = [run(rows, text=None, variants=variants, sending=FAST) for _ in range(2)]
    sent_by_run = []
    for result, api, sink in runs:
        adds_up(result.summary, sink)
        got = {m["destination_number"]: m["text"] for m in api.messages}
        expected = sink.rows.set_index("destination_number")["variant"]
        names = dict(zip(rows["phone"], rows["name"], strict=True))
        for number, text in got.items():
            assert text == texts[expected[number]].format(name=names[number])
        held = expected[expected == HOLDOUT].index
        assert not set(held) & set(got), "the hold-out group gets nothing"
        sent_by_run.append(expected)
        summary = result.summary
        assert summary["held_out"] == len(held)
        shares = {k: v["recipients"] / 10_000 for k, v in summary["variants"].items()}
        assert abs(shares["A"] - 0.4) < 0.03 and abs(shares["B"] - 0.4) < 0.03
        assert abs(shares[HOLDOUT] - 0.2) < 0.03
        assert summary["variants"]["A"]["accepted"] == summary["variants"]["A"]["recipients"]
        accepted = xcom_frames(sink.rows)["accepted_numbers"]
        assert set(accepted["variant"]) == {"A", "B"}
    assert (sent_by_run[0].sort_index() == sent_by_run[1].sort_index()).all()


# -- send windows --------------------------------------------------------------------------------


def test_only_recipients_inside_their_local_window_are_sent_the_rest_deferred():
    # 14:30 UTC: 14:30 in London (inside 09-20), 09:30 in New York (inside), 01:30 next day in
    # Sydney (outside; opens 09:00 Sydney = 22:00 UTC), toll-free: inside only where every NANP
    # zone is (Guam is 00:30 the next day: outside).
    at = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
    recipients = [UK[0], NEW_YORK[0], SYDNEY, TOLL_FREE, "nope", UK[0]]
    result, api, sink = run(recipients, at=at, window=("09:00", "20:00"))
    assert set(sent(api)) == {(UK[0], "Hello"), (NEW_YORK[0], "Hello")}
    summary = result.summary
    assert summary["outside_window"] == 2 and summary["accepted"] == 2
    assert summary["invalid"] == 1 and summary["duplicates"] == 1
    adds_up(summary, sink)
    assert result.wait_s is None, "skip mode: no wait"
    deferred = sink.rows[sink.rows["outcome"] == "deferred"].set_index("destination_number")
    assert deferred.loc[SYDNEY, "time_zone"] == "Australia/Sydney"
    assert deferred.loc[SYDNEY, "next_window_start"] == "2026-12-01T22:00:00+00:00"
    zones = deferred.loc[TOLL_FREE, "time_zone"].split(", ")
    assert {"Pacific/Guam", "America/St_Johns", "Pacific/Honolulu"} <= set(zones)


def test_a_window_across_midnight():
    # 23:30 UTC: London 23:30 (inside 21:00-08:00), New York 18:30 (outside, opens 21:00 NY).
    at = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    _, api, sink = run([UK[0], NEW_YORK[0]], at=at, window=("21:00", "08:00"))
    assert set(sent(api)) == {(UK[0], "Hello")}
    deferred = sink.rows[sink.rows["outcome"] == "deferred"]
    assert deferred[["destination_number", "time_zone", "next_window_start"]].to_dict(
        "records"
    ) == [
        {
            "destination_number": NEW_YORK[0],
            "time_zone": "America/New_York",
            "next_window_start": "2026-12-02T02:00:00+00:00",
        }
    ]


@pytest.mark.parametrize(("zone", "inside"), [("UTC", True), ("Asia/Tokyo", False)])
def test_a_number_with_no_known_zone_uses_window_timezone(zone, inside):
    # +882 16 is an international network: phonenumbers knows no zone for it. Tokyo: 21:00.
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    result, _, sink = run(["882167890123"], at=at, window=("09:00", "20:00"), fallback=zone)
    summary = result.summary
    assert (summary["accepted"], summary["outside_window"]) == (int(inside), int(not inside))
    if not inside:
        assert sink.rows["time_zone"].tolist() == ["Asia/Tokyo"]


def test_precedence_invalid_duplicate_suppressed_outside():
    at = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # London 03:00: outside
    recipients = ["nope", UK[0], UK[0], UK[1], UK[2]]
    result, api, sink = run(
        recipients, at=at, window=("09:00", "20:00"), suppression=[UK[0]], dry_run=True
    )
    summary = result.summary
    assert (summary["invalid"], summary["duplicates"], summary["suppressed"]) == (1, 1, 1)
    assert summary["outside_window"] == 2 and summary["accepted"] == 0
    adds_up(summary, sink)
    assert api.calls == 0


def test_wait_mode_sends_what_is_inside_and_says_when_the_next_window_opens():
    at = datetime(2026, 12, 1, 13, 59, 57, tzinfo=UTC)  # New York opens at 14:00 UTC
    result, api, _ = run(
        [*UK[:3], *NEW_YORK], at=at, window=("09:00", "20:00"), wait_for_window=True
    )
    assert set(sent(api)) == {(n, "Hello") for n in UK[:3]}
    assert result.wait_s == 3.0, "the seconds until 14:00 UTC on the runner's clock"


def test_wait_mode_refuses_numbers_whose_zones_never_share_the_window():
    api = FakeApi()
    at = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    with pytest.raises(RecipientsError, match="never inside"):
        # Guam to Newfoundland: 14.5 hours apart, a 3-hour window
        run([UK[0], TOLL_FREE], api=api, at=at, window=("09:00", "12:00"), wait_for_window=True)
    assert api.calls == 0


def test_the_never_in_window_error_masks_its_number_unless_log_numbers_is_full():
    at, window = datetime(2026, 12, 1, 14, 0, tzinfo=UTC), ("09:00", "12:00")
    with pytest.raises(RecipientsError, match=r"e\.g\. \+1 \*{8} 99: ") as masked:
        run([TOLL_FREE], at=at, window=window, wait_for_window=True)
    assert "8005550199" not in str(masked.value)
    with pytest.raises(RecipientsError, match=f"e\\.g\\. {TOLL_FREE}: "):
        run([TOLL_FREE], at=at, window=window, wait_for_window=True, log_numbers="full")


def test_the_invalid_rows_warning_masks_its_examples_unless_log_numbers_is_full(caplog):
    rows = ["+1 617885757", "07443 3322", "447443332212"]
    with caplog.at_level("WARNING", logger="airflow_provider_voxsms"):
        run(rows, default_region="GB")
    (line,) = [r.getMessage() for r in caplog.records if "invalid row" in r.getMessage()]
    assert "'+1 ******* 57'" in line and "'********22'" in line
    assert "617885757" not in line and "74433322" not in line
    caplog.clear()
    with caplog.at_level("WARNING", logger="airflow_provider_voxsms"):
        run(rows, default_region="GB", log_numbers="full")
    (line,) = [r.getMessage() for r in caplog.records if "invalid row" in r.getMessage()]
    assert "'+1 617885757'" in line and "'07443 3322'" in line


# -- guards and dry runs -------------------------------------------------------------------------


def test_a_segment_budget_refuses_to_start_and_sends_nothing():
    rows = [{"phone": n, "name": "x" * 160} for n in UK[:4]]  # 165 GSM-7 characters: 2 segments
    api = FakeApi()
    with pytest.raises(RecipientsError, match="max_segments=7"):
        run(rows, api=api, text="Hi {name}!!", max_segments=7)
    assert api.calls == 0
    result, _, _ = run(rows, text="Hi {name}!!", max_segments=8)
    assert result.summary["segments_planned"] == 8 and result.summary["accepted"] == 4


@pytest.mark.parametrize("streamed", [False, True])
def test_max_recipients_refuses_before_the_first_chunk_is_sent(streamed):
    api = FakeApi()
    chunks = [UK[:3], UK[3:]] if streamed else UK
    with pytest.raises(RecipientsError, match="max_recipients=5"):
        run(chunks, api=api, streamed=streamed, max_recipients=5)
    assert api.calls == 0


def test_the_dry_run_reports_segments_and_distinct_texts():
    rows = [{"phone": n, "name": name} for n, name in zip(UK[:4], "ABAC", strict=True)]
    result, api, _ = run(rows, text="Hi {name}", dry_run=True)
    summary = result.summary
    assert summary["dry_run"] and summary["distinct_texts"] == 3
    assert summary["segments_planned"] == 4 and summary["accepted"] == 0
    assert api.calls == 0


# -- streaming, settling once, stops -------------------------------------------------------------


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"4474433{i:05d}" for i in range(start, start + count)]


def test_copies_are_dropped_across_chunks_exactly_as_within_one():
    chunks = [numbers(5), numbers(5, 3), ["+" + numbers(1)[0]]]
    result, api, sink = run(chunks, streamed=True)
    assert set(api.sent().values()) == {1} and len(api.sent()) == 8
    assert result.summary["duplicates"] == 3
    adds_up(result.summary, sink)


def test_with_dedupe_by_number_and_text_a_copy_needs_the_same_text_to_be_dropped():
    """A copy in a later chunk is dropped only when its rendered text is the same too."""
    n = numbers(3)
    rows = pd.DataFrame(
        {
            "phone": [n[0], n[1], n[2], n[0], n[1], n[0]],
            "name": ["Ann", "Bob", "Cy", "Ann", "Bobby", "Ann"],
        }
    )
    chunks = [rows.iloc[i : i + 2] for i in range(0, 6, 2)]
    result, api, sink = run(chunks, text="Hi {name}", streamed=True, dedupe="number_and_text")
    assert sent(api) == {
        (n[0], "Hi Ann"): 1,
        (n[1], "Hi Bob"): 1,
        (n[2], "Hi Cy"): 1,
        (n[1], "Hi Bobby"): 1,
    }
    summary = result.summary
    assert (summary["accepted"], summary["duplicates"], summary["distinct_texts"]) == (4, 2, 4)
    adds_up(summary, sink)


@pytest.mark.parametrize("streamed", [False, True])
def test_one_message_per_person_the_first_row_wins_whatever_its_text(streamed, caplog):
    """ "Hi Bob" and "Hi Robert" to one number: one SMS, the first row's; the log counts the
    numbers whose rows had different texts."""
    n = numbers(2)
    rows = pd.DataFrame({"phone": [n[0], n[1], n[0], n[0]], "name": ["Bob", "Cy", "Robert", "Bob"]})
    chunks = [rows.iloc[:2], rows.iloc[2:]] if streamed else rows
    result, api, sink = run(chunks, text="Hi {name}", streamed=streamed)
    assert sent(api) == {(n[0], "Hi Bob"): 1, (n[1], "Hi Cy"): 1}
    assert result.summary["duplicates"] == 2
    adds_up(result.summary, sink)
    reasons = set(sink.rows.loc[sink.rows["outcome"] == "duplicate", "reason"])
    assert reasons == {"same number as an earlier row: one message per number"}
    assert "1 number(s) had rows with different texts" in caplog.text


def test_smart_encoding_sends_look_alikes_in_one_gsm7_segment():
    text = "Hi {name} \u2014 it\u2019s \u201cready\u201d\u2026 see\u00a0you"
    rows = [{"phone": p, "name": name} for p, name in zip(UK[:3], "ABC", strict=True)]
    result, api, _ = run(rows, text=text, smart_encoding=True)
    assert sent(api) == {
        (p, f'Hi {x} - it\'s "ready"... see you'): 1 for p, x in zip(UK, "ABC", strict=False)
    }
    summary = result.summary
    assert summary["smart_encoded"] == 3 and summary["segments_saved"] == 0
    assert summary["fragments"] == 3, "one GSM-7 fragment each"


def test_without_smart_encoding_the_plan_names_the_characters_and_what_it_would_save(caplog):
    result, _, _ = run(UK[:2], text="Your order \u2014 " + "x" * 100)
    assert result.summary["segments_planned"] == 4 and result.summary["smart_encoded"] == 0
    assert "2 message(s) are UCS-2 only because of '\u2014'" in caplog.text
    assert "smart_encoding=True would send them as GSM-7 and save 2 segment(s)" in caplog.text


@pytest.mark.parametrize(("limit", "refused"), [(29, True), (30, False)])
def test_limits_count_every_chunk_with_copies_once_before_sending_any(limit, refused):
    rows = [*numbers(30), *numbers(30)]
    chunks = [rows[i : i + 8] for i in range(0, 60, 8)]
    api = FakeApi()
    if refused:
        with pytest.raises(RecipientsError, match="max_recipients=29"):
            run(chunks, api=api, streamed=True, max_recipients=limit)
        assert api.calls == 0
    else:
        result, _, _ = run(chunks, api=api, streamed=True, max_recipients=limit)
        assert result.summary["accepted"] == 30


def test_a_pass_of_many_chunks_settles_once_and_writes_each_row_once():
    """Six chunks, every 7th request processed and then answered HTTP 500: one settle wait
    for the whole pass, every number accepted once, and the rows that waited for the settle
    phase are written after it with the number as the input wrote it."""
    chunks = [pd.DataFrame({"phone": ["+" + n for n in numbers(200, 200 * i)]}) for i in range(6)]
    api, waits = FakeApi(every_nth(7, "processed_then_500")), []
    sending = CampaignSettings("VoxDemo", settle_delay_s=10.0, max_concurrency=2, batch_size=20)
    result, api, sink = run(chunks, api=api, streamed=True, sending=sending, sleep=waits.append)
    assert len(waits) == 1 and 0 < waits[0] <= 10.0, waits
    assert set(api.sent().values()) == {1} and len(api.sent()) == 1200
    summary = result.summary
    assert summary["accepted"] == 1200 and summary["reconciled"] == 8 * 20
    rows = sink.rows
    assert len(rows) == 1200 and set(rows["outcome"]) == {"accepted"}
    assert rows["message_id"].notna().all() and rows["destination_number"].is_unique
    assert (rows["input_number"] == "+" + rows["destination_number"]).all()


@pytest.mark.parametrize(("text", "segments"), [("Hello", 1), ("x" * 200, 2)])
def test_fragments_count_every_accepted_message_reconciled_ones_too(text, segments):
    api = FakeApi(every_nth(9, "processed_then_500"))
    sending = CampaignSettings("VoxDemo", max_concurrency=2, batch_size=10)
    result, _, _ = run(numbers(300), api=api, text=text, sending=sending)
    summary = result.summary
    assert summary["reconciled"] == 30 and summary["accepted"] == 300
    assert summary["fragments"] == 300 * segments


def test_a_stop_mid_stream_leaves_later_chunks_not_sent_and_does_not_settle():
    api = FakeApi(lambda call, batch: "money" if call >= 3 else None)
    sending = CampaignSettings("VoxDemo", max_concurrency=1, batch_size=10)
    result, api, sink = run([numbers(20), numbers(20, 20)], api=api, streamed=True, sending=sending)
    summary = result.summary
    assert result.stopped_by.code == 127 and api.history_calls == 0
    assert (summary["accepted"], summary["not_sent"]) == (20, 20)
    adds_up(summary, sink)


@settings(max_examples=30, deadline=None)
@given(
    chunks=st.lists(
        st.lists(
            st.sampled_from([*numbers(12), "nope", "+" + numbers(1)[0], "0"]),
            max_size=15,
        ),
        min_size=1,
        max_size=4,
    ),
    opted=st.lists(st.sampled_from(numbers(12)), max_size=4),
    capped=st.lists(st.sampled_from(numbers(12)), max_size=4),
    fault=st.sampled_from([None, "processed_then_500", "reset", "throttled", "money"]),
    every=st.integers(1, 3),
    holdout=st.sampled_from([0.0, 0.3]),
    expire_after=st.sampled_from([None, 1, 3]),
    dedupe=st.sampled_from(["number", "number_and_text"]),
)
def test_every_input_row_ends_in_exactly_one_outcome(
    chunks, opted, capped, fault, every, holdout, expire_after, dedupe
):
    """Random mixes of every outcome: invalid, duplicate, suppressed, held out, capped,
    expired (the validity period ends after a few batches), faults and stops."""

    class CappingLedger(FakeLedger):
        def claim(self, batch):
            return Batch(
                batch.index, batch.text, tuple(n for n in batch.numbers if n not in capped)
            )

    api = FakeApi(every_nth(every, fault) if fault else None)
    sending = CampaignSettings("VoxDemo", max_concurrency=1, batch_size=3, settle_rounds=2)
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ticks = iter(range(10_000))
    variants = Variants.parse({"A": "a {name}", "B": "b"}, holdout=holdout, seed="s")
    frames = [pd.DataFrame({"phone": c, "name": "x"}) for c in chunks]
    sink = ListSink()
    settings_ = RunnerSettings(
        sending,
        text=None,
        variants=variants,
        dedupe=dedupe,
        validity_s=None if expire_after is None else expire_after - 0.5,
    )
    runner = CampaignRunner(
        settings_,
        api=api,
        sink=sink,
        ledger=CappingLedger(),
        opted_out=opt_outs([opted]),
        clock=lambda: start + timedelta(seconds=next(ticks)),  # a second per look at the clock
        sleep=lambda s: None,
    )
    result = runner.run(lambda: iter(frames), streamed=True)
    assert result.summary["recipients"] == sum(len(c) for c in chunks)
    adds_up(result.summary, sink)
    assert max(api.sent().values(), default=1) == 1, "nothing sent twice"
    assert not set(api.sent()) & set(capped), "a capped number is never sent"
    counts = sink.rows["outcome"].value_counts() if sink.frames else pd.Series(dtype=int)
    for outcome, key in OUTCOME_SUMMARY_KEYS.items():
        assert counts.get(outcome, 0) == result.summary[key], outcome


def test_a_settle_rounds_re_send_is_judged_by_the_window_when_it_goes():
    """A re-send in the settle phase is judged at the clock's time then: a window that closed
    while the pass was sending holds it back as deferred, never texted late."""
    moments = iter([datetime(2026, 12, 1, 19, 59, 59, tzinfo=UTC)] * 2)  # start, first send
    late = datetime(2026, 12, 1, 20, 0, 1, tzinfo=UTC)

    def clock():
        return next(moments, late)

    api = FakeApi(lambda call, batch: "reset" if call == 1 else None)
    sink = ListSink()
    settings_ = RunnerSettings(SENDING, text="Hello", window=SendWindow.parse(("09:00", "20:00")))
    runner = CampaignRunner(settings_, api=api, sink=sink, clock=clock, sleep=lambda s: None)
    result = runner.run(lambda: iter([UK[:2]]), streamed=False)
    assert api.sent() == Counter(), "the reset request never arrived; its re-send is held"
    assert result.summary["outside_window"] == 2
    adds_up(result.summary, sink)
