"""report: outcome rows, the failed-numbers XCom made of them (same columns for every stage) and
the invalid-row summary."""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms import report
from airflow_provider_voxsms.sms.model import FAILED_COLUMNS, Batch, BatchOutcome, CampaignReport
from airflow_provider_voxsms.sms.recipients import prepare_recipients


def test_every_stage_has_the_number_as_written_and_normalised():
    prepared = prepare_recipients(
        ["+44 7443 332212", "07443 332213", "07443 33", "oops", "447443332214"],
        text="hi",
        default_region="GB",
    )
    run = CampaignReport(
        outcomes=[
            BatchOutcome(
                Batch(0, "hi", ("447443332212", "447443332213", "447443332214")),
                failed=[("447443332212", 509, "A2P SMS disabled")],
                not_sent=[("447443332213", 127, "not sent: no money")],
                accepted=[("447443332214", 5)],
            )
        ]
    )
    rows = pd.concat(
        [report.prepared_rows(prepared), report.sent_rows(run, prepared.as_written)],
        ignore_index=True,
    )
    assert list(rows["outcome"]) == ["invalid", "invalid", "accepted", "failed", "not_sent"]
    failed = report.xcom_frames(rows)["failed_numbers"]
    assert list(failed.columns) == FAILED_COLUMNS
    assert list(failed["stage"]) == ["validation", "validation", "api", "not_sent"]
    rows = {r["input_number"]: r for r in failed.to_dict("records")}
    assert rows["+44 7443 332212"]["destination_number"] == "447443332212"
    assert rows["+44 7443 332212"]["stage"] == "api"
    assert rows["07443 332213"]["destination_number"] == "447443332213"
    assert rows["07443 332213"]["stage"] == "not_sent"
    assert rows["oops"]["stage"] == "validation" and pd.isna(rows["oops"]["destination_number"])
    assert rows["07443 33"]["stage"] == "validation"


def test_invalid_rows_are_summarised_by_kind_with_examples():
    prepared = prepare_recipients(["oops", "nope", "447443332212", "12"], text="hi")
    lines = report.invalid_summary(prepared, examples=2)
    assert len(lines) >= 1 and sum(int(line.split(" x ")[0]) for line in lines) == 3
    assert "'oops'" in lines[0] and "'nope'" in lines[0]
