"""Whose rows a table holds: one key for a task instance's campaign, read from a task context.

A campaign is what one task sends for one ``campaign_id``: by default the DAG run's logical
date, else its run id. Re-running the same interval (a clear, ``dags test`` again, a backfill,
a run triggered again for the same date) is therefore the same campaign: the send ledger
resumes it and sends nobody twice, while the next interval is a new campaign. The ledger and
the results table key on :data:`CAMPAIGN_COLUMNS` (the results keep the ``run_id`` that wrote
each row); the failed-numbers and delivery-status tables, written per task instance, key on
:data:`TASK_COLUMNS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from airflow_provider_voxsms.errors import ConfigurationError

TASK_COLUMNS = ("dag_id", "run_id", "task_id", "map_index")
CAMPAIGN_COLUMNS = ("dag_id", "task_id", "map_index", "campaign_id")
MAX_ID_LENGTH = 250  # the key columns are VARCHAR(250)


@dataclass(frozen=True)
class CampaignKey:
    """One task's campaign (``dag_id``, ``task_id``, ``map_index``, ``campaign_id``) and the
    DAG run (``run_id``) working on it now."""

    dag_id: str
    task_id: str
    map_index: int
    campaign_id: str
    run_id: str

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any], campaign_id: str | None = None
    ) -> CampaignKey:
        """The key of the running task instance; ``campaign_id`` None means the DAG run's
        logical date (ISO-8601, UTC), or its run id when the run has none."""
        ti = context["ti"]
        if campaign_id is None:
            campaign_id = default_campaign_id(context)
        elif not isinstance(campaign_id, str) or not campaign_id.strip():
            raise ConfigurationError(f"campaign_id must be a non-empty string, got {campaign_id!r}")
        if len(campaign_id) > MAX_ID_LENGTH:
            raise ConfigurationError(
                f"campaign_id has {len(campaign_id)} characters; at most {MAX_ID_LENGTH} fit "
                "the ledger's and the results table's key"
            )
        map_index = int(getattr(ti, "map_index", -1))
        return cls(ti.dag_id, ti.task_id, map_index, campaign_id, ti.run_id)

    def values(self, columns: Sequence[str]) -> tuple:
        """The key's values for ``columns`` (e.g. :data:`CAMPAIGN_COLUMNS`)."""
        return tuple(getattr(self, column) for column in columns)

    @property
    def digest(self) -> str:
        """The campaign as 32 hex characters: the send ledger's row key."""
        return _digest("campaign", self.dag_id, self.task_id, str(self.map_index), self.campaign_id)

    @property
    def task_instance_digest(self) -> str:
        """The key earlier versions of the ledger wrote rows under (one per DAG run); read so
        that a try after an upgrade resumes from the tries before it."""
        return _digest(self.dag_id, self.run_id, self.task_id, str(self.map_index))


def default_campaign_id(context: Mapping[str, Any]) -> str:
    """The DAG run's logical date as ISO-8601 in UTC, or its run id when it has none (a run
    triggered without one, or a context without a DAG run)."""
    logical_date = context.get("logical_date")
    if logical_date is None:
        logical_date = getattr(context.get("dag_run"), "logical_date", None)
    if logical_date is None:
        return context["ti"].run_id
    return logical_date.astimezone(UTC).isoformat()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
