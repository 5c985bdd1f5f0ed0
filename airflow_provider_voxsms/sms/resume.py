"""Resume a campaign from the send ledger: skip what earlier tries settled, reconcile the rest.

Rows an earlier try left ``in_flight`` or ``unknown`` (it died, or the connection broke after
sending) are looked up in ``A2PGetSmsHistory``: a message from the same sender to the same
number, processed between ``RECONCILE_SKEW`` before the row was claimed and
``RECONCILE_AFTER`` after it (and with the same text when the API stored it), counts as
accepted. Anything not found stays ``unknown``
and is never sent again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
from airflow_provider_voxsms.ledger import (
    ACCEPTED,
    FAILED,
    IN_FLIGHT,
    UNKNOWN,
    SendLedger,
    text_hash,
)
from airflow_provider_voxsms.sms.dispatch import BatchOutcome
from airflow_provider_voxsms.sms.plan import Batch

log = logging.getLogger(__name__)

RECONCILE_SKEW = timedelta(minutes=2)
# Latest a claimed request can have been processed: its retries and back-off, its read timeout.
RECONCILE_AFTER = timedelta(minutes=10)
HISTORY_PAGE = 1000
MAX_HISTORY_PAGES = 200


@dataclass
class Resumed:
    """The rows still to send, and earlier tries' outcomes for the rows already settled."""

    to_send: pd.DataFrame
    outcomes: list[BatchOutcome]
    reconciled: int = 0


def resume(
    valid: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    ledger: SendLedger,
    hook: VoximplantHook,
    src_number: str,
) -> Resumed:
    """Split ``valid`` (phone, text) by what the ledger knows from earlier tries."""
    if previous.empty:
        return Resumed(valid, [])
    hashes = {text: text_hash(text) for text in pd.unique(valid["text"])}
    keys = pd.MultiIndex.from_arrays([valid["phone"], valid["text"].map(hashes).astype(str)])
    known = previous.set_index(["destination_number", "text_hash"])
    seen = keys.isin(known.index)
    done = valid[seen]
    settled = known.loc[keys[seen]]

    pending = settled[settled["status"].isin([IN_FLIGHT, UNKNOWN])]
    found = reconcile(hook, pending, src_number, texts={h: t for t, h in hashes.items()})
    if len(pending):
        ledger.resolve(found, [key for key in pending.index if key not in found])
        log.info(
            "Send ledger: %d number(s) were in flight when an earlier try stopped; %d found in "
            "the API's history (accepted), %d stay unknown and are not sent again",
            len(pending),
            len(found),
            len(pending) - len(found),
        )

    by_text: dict[str, BatchOutcome] = {}
    for (number, tx), row, text in zip(
        settled.index, settled.itertuples(), done["text"], strict=True
    ):
        outcome = by_text.setdefault(tx, BatchOutcome(Batch(-1, text, ()), owned=False))
        outcome.batch = Batch(-1, text, (*outcome.batch.numbers, number))
        if (number, tx) in found:
            outcome.accepted.append((number, found[(number, tx)]))
        elif row.status == ACCEPTED:
            outcome.accepted.append((number, int(row.message_id)))
        elif row.status == FAILED:
            code = None if pd.isna(row.error_code) else int(row.error_code)
            outcome.failed.append((number, code, "earlier try: failed"))
        else:
            outcome.unknown.append((number, "sent by an earlier try that stopped; not in history"))
    return Resumed(valid[~seen], list(by_text.values()), reconciled=len(found))


def reconcile(
    hook: VoximplantHook, pending: pd.DataFrame, src_number: str, texts: dict[str, str]
) -> dict[tuple[str, str], int]:
    """Find pending (number, text_hash) rows in the API's history; returns their message ids."""
    if pending.empty:
        return {}
    since = pending["claimed_at"].min().to_pydatetime() - RECONCILE_SKEW
    until = pending["claimed_at"].max().to_pydatetime() + RECONCILE_AFTER
    history: dict[str, list[dict]] = defaultdict(list)
    for row in _history(hook, src_number, since, until):
        history[str(row.get("destination_number"))].append(row)

    found: dict[tuple[str, str], int] = {}
    used: set[int] = set()
    for (number, tx), claimed_at in pending["claimed_at"].items():
        earliest = claimed_at.to_pydatetime() - RECONCILE_SKEW
        latest = claimed_at.to_pydatetime() + RECONCILE_AFTER
        for row in sorted(history.get(number, ()), key=lambda r: r["message_id"]):
            stored_text = row.get("text")
            if (
                row["message_id"] not in used
                and earliest <= _processed_at(row) <= latest
                and (not stored_text or stored_text == texts.get(tx))
            ):
                used.add(row["message_id"])
                found[(number, tx)] = int(row["message_id"])
                break
    return found


def _history(hook: VoximplantHook, src_number: str, since: datetime, until: datetime):
    to = min(until, datetime.now(UTC) + timedelta(minutes=1))
    for page in range(MAX_HISTORY_PAGES):
        answer = hook.a2p_get_sms_history(
            source_number=src_number,
            from_date=since,
            to_date=to,
            count=HISTORY_PAGE,
            offset=page * HISTORY_PAGE,
        )
        rows = answer.get("result") or []
        yield from rows
        if len(rows) < HISTORY_PAGE:
            return
    log.warning("Reconciliation read %d history pages and stopped", MAX_HISTORY_PAGES)


def _processed_at(row: dict) -> datetime:
    try:
        return datetime.strptime(row["processing_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)  # no date: cannot be matched
