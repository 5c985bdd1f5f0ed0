"""CampaignKey.from_context: which campaign a task's sends belong to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_voxsms.errors import ConfigurationError
from airflow_provider_voxsms.storage.key import CAMPAIGN_COLUMNS, TASK_COLUMNS, CampaignKey

TI = SimpleNamespace(dag_id="dag", run_id="scheduled__2026-01-05", task_id="send", map_index=2)
LOGICAL = datetime(2026, 1, 5, 3, 0, tzinfo=timezone(timedelta(hours=3)))


def test_the_default_campaign_is_the_logical_date_in_utc():
    for context in (
        {"ti": TI, "logical_date": LOGICAL, "dag_run": SimpleNamespace(logical_date=LOGICAL)},
        {"ti": TI, "dag_run": SimpleNamespace(logical_date=LOGICAL)},  # only on the run
    ):
        key = CampaignKey.from_context(context)
        assert key == CampaignKey("dag", "send", 2, "2026-01-05T00:00:00+00:00", TI.run_id)


def test_a_run_without_a_logical_date_is_its_own_campaign():
    manual = SimpleNamespace(logical_date=None, run_id=TI.run_id)
    for context in ({"ti": TI, "dag_run": manual}, {"ti": TI}):
        assert CampaignKey.from_context(context).campaign_id == TI.run_id


def test_an_explicit_campaign_id_wins_and_must_fit_the_key():
    context = {"ti": TI, "logical_date": LOGICAL}
    assert CampaignKey.from_context(context, "spring-sale").campaign_id == "spring-sale"
    for bad in ("", "  ", "x" * 251, 7):
        with pytest.raises(ConfigurationError, match="campaign_id"):
            CampaignKey.from_context(context, bad)


def test_keys_digest_the_campaign_and_keep_the_task_instances_old_digest():
    jan_5 = datetime(2026, 1, 5, tzinfo=UTC)
    key = CampaignKey.from_context({"ti": TI, "logical_date": jan_5})
    backfill = SimpleNamespace(**{**vars(TI), "run_id": "backfill__2026-01-05"})
    rerun = CampaignKey.from_context({"ti": backfill, "logical_date": jan_5})
    assert key.digest == rerun.digest and len(key.digest) == 32
    assert key.task_instance_digest != rerun.task_instance_digest
    assert key.values(CAMPAIGN_COLUMNS) == ("dag", "send", 2, "2026-01-05T00:00:00+00:00")
    assert key.values(TASK_COLUMNS) == ("dag", TI.run_id, "send", 2)
