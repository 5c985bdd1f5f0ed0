"""Every input row's outcome as one row of ``OUTCOME_COLUMNS``, and the XCom frames made of them.

A pass writes outcome rows as they become final: a chunk's prepared rows (invalid, duplicate,
opted out, outside the window) and its settled answers at once, the numbers it left open after
the pass's settle phase. The results table stores these rows as they are; without one, the
same rows become the four output XComs (:func:`xcom_frames`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd

from airflow_provider_voxsms.sms.model import FAILED_COLUMNS, OUTCOME_COLUMNS, CampaignReport
from airflow_provider_voxsms.sms.recipients import PreparedRecipients
from airflow_provider_voxsms.sms.window import SendWindow, assess

DEFERRED_COLUMNS = ["destination_number", "time_zone", "next_window_start"]
DUPLICATE_REASONS = {
    "number": "same number as an earlier row: one message per number",
    "number_and_text": "same number and text as an earlier row: sent once",
}
SUPPRESSED_REASON = "opted out (suppression list)"
DEFERRED_REASON = "outside the send window"
HELD_OUT_REASON = "hold-out group: never sent (see holdout)"

# The summary's count of each outcome.
OUTCOME_SUMMARY_KEYS = {
    "accepted": "accepted",
    "failed": "failed",
    "not_sent": "not_sent",
    "unknown": "unknown",
    "invalid": "invalid",
    "duplicate": "duplicates",
    "suppressed": "suppressed",
    "deferred": "outside_window",
    "capped": "capped",
    "expired": "expired",
    "held_out": "held_out",
}
# Which outcomes each of the send's output XComs holds, and the failed numbers' stages.
XCOM_OUTCOMES = {
    "accepted_numbers": ["accepted"],
    "failed_numbers": ["invalid", "failed", "not_sent", "capped", "expired"],
    "unknown_numbers": ["unknown"],
    "deferred_numbers": ["deferred"],
}
_STAGES = {
    "invalid": "validation",
    "failed": "api",
    "not_sent": "not_sent",
    "capped": "capped",
    "expired": "expired",
    "held_out": "held_out",
}

AsWritten = Callable[[list[str]], list[str]]


def invalid_summary(
    prepared: PreparedRecipients, examples: int = 3, shown: Callable[[str], str] = str
) -> list[str]:
    """One line per kind of invalid row (the reason up to its first colon), most common first,
    with its count and a few of the values as written, each as ``shown`` gives it (a mask)."""
    if prepared.invalid.empty:
        return []
    kinds = prepared.invalid["reason"].astype(str).str.split(":", n=1).str[0]
    lines = []
    for kind, rows in prepared.invalid.groupby(kinds.to_numpy(), sort=False):
        values = ", ".join(repr(shown(v)) for v in rows["original"].head(examples).tolist())
        lines.append((len(rows), f"{len(rows)} x {kind} (e.g. {values})"))
    return [line for _, line in sorted(lines, key=lambda item: -item[0])]


def deferred_numbers(held: pd.DataFrame, window: SendWindow | None, now: datetime) -> pd.DataFrame:
    """Rows kept back outside their send window (``DEFERRED_COLUMNS``), for a later run:
    ``next_window_start`` is UTC ISO time, missing when the number's zones never share it."""
    if window is None or held.empty:
        return pd.DataFrame(columns=DEFERRED_COLUMNS)
    judged = assess(held["phone"], window, now)
    return pd.DataFrame(
        {
            "destination_number": held["phone"].astype(object).to_numpy(),
            "time_zone": judged["time_zone"].to_numpy(),
            "next_window_start": [
                None if pd.isna(start) else start.isoformat()
                for start in judged["next_window_start"]
            ],
        }
    )


def prepared_rows(prepared: PreparedRecipients, dedupe: str = "number") -> pd.DataFrame:
    """The rows preparing a chunk settled: invalid rows and dropped duplicates (their reason
    says which ``dedupe`` rule dropped them)."""
    invalid, copies = prepared.invalid, prepared.copies
    frames = [
        pd.DataFrame(
            {
                "destination_number": invalid["phone"].astype(object),
                "input_number": invalid["original"].astype(str),
                "outcome": "invalid",
                "reason": invalid["reason"].astype(str),
            }
        )
    ]
    if copies is not None and len(copies):
        frames.append(
            pd.DataFrame(
                {
                    "destination_number": copies["phone"].astype(object),
                    "input_number": prepared.copies_as_written(),
                    "outcome": "duplicate",
                    "reason": DUPLICATE_REASONS[dedupe],
                }
            )
        )
    return _concat(frames)


def held_out_rows(rows: pd.DataFrame, as_written: AsWritten) -> pd.DataFrame:
    """Rows of the hold-out group: valid, never sent, kept to compare with."""
    numbers = rows["phone"].astype(object).tolist()
    frame = pd.DataFrame(
        {
            "destination_number": pd.Series(numbers, dtype=object),
            "input_number": as_written(numbers),
            "outcome": "held_out",
            "reason": HELD_OUT_REASON,
        }
    )
    return _concat([frame])


def held_rows(suppressed: pd.DataFrame, deferred: pd.DataFrame, as_written: AsWritten):
    """Rows kept back unsent: opted out (``phone``) and outside the window (``deferred``)."""
    numbers = suppressed["phone"].astype(object).tolist()
    return _concat(
        [
            pd.DataFrame(
                {
                    "destination_number": pd.Series(numbers, dtype=object),
                    "input_number": as_written(numbers),
                    "outcome": "suppressed",
                    "reason": SUPPRESSED_REASON,
                }
            ),
            pd.DataFrame(
                {
                    "destination_number": deferred["destination_number"],
                    "input_number": as_written(deferred["destination_number"].tolist()),
                    "outcome": "deferred",
                    "reason": DEFERRED_REASON,
                    "time_zone": deferred["time_zone"],
                    "next_window_start": deferred["next_window_start"],
                }
            ),
        ]
    )


def sent_rows(report: CampaignReport, as_written: AsWritten) -> pd.DataFrame:
    """The rows of a report's final answers: accepted, failed, not sent, unknown, capped,
    expired."""
    frames = []
    for outcome, columns in (
        ("accepted", ["destination_number", "message_id"]),
        ("failed", ["destination_number", "error_code", "reason"]),
        ("not_sent", ["destination_number", "error_code", "reason"]),
        ("unknown", ["destination_number", "reason"]),
        ("capped", ["destination_number", "reason"]),
        ("expired", ["destination_number", "reason"]),
    ):
        entries = [entry for o in report.outcomes for entry in getattr(o, outcome)]
        if entries:
            frame = pd.DataFrame(entries, columns=columns)
            frame["input_number"] = as_written(frame["destination_number"].tolist())
            frame["outcome"] = outcome
            frames.append(frame)
    return _concat(frames)


def xcom_frames(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The four output XComs of a send without a results table, from its outcome rows:
    ``failed_numbers`` (``FAILED_COLUMNS``; stage ``validation``, ``api`` or ``not_sent``),
    ``accepted_numbers`` (with message ids), ``unknown_numbers`` and ``deferred_numbers``."""
    outcome = rows["outcome"]
    failed = rows[outcome.isin(XCOM_OUTCOMES["failed_numbers"])]
    stage = failed["outcome"].map(_STAGES)
    order = stage.map({name: i for i, name in enumerate(_STAGES.values())}).to_numpy()
    failed = failed.iloc[order.argsort(kind="stable")]
    accepted = rows[outcome == "accepted"]
    unknown = rows[outcome == "unknown"]
    return {
        "failed_numbers": pd.DataFrame(
            {
                "destination_number": failed["destination_number"].astype(object),
                "input_number": failed["input_number"].astype(object),
                "error_code": pd.array(failed["error_code"], dtype="Int64"),
                "error_description": failed["reason"].astype(object),
                "stage": failed["outcome"].map(_STAGES).astype(object),
            }
        ).reset_index(drop=True)[FAILED_COLUMNS],
        "accepted_numbers": _accepted_numbers(accepted),
        "unknown_numbers": unknown[["destination_number", "reason"]].reset_index(drop=True),
        "deferred_numbers": rows.loc[outcome == "deferred", DEFERRED_COLUMNS]
        .astype(object)
        .reset_index(drop=True),
    }


def _accepted_numbers(accepted: pd.DataFrame) -> pd.DataFrame:
    """Accepted numbers with their message ids (and variants, when the campaign has them)."""
    frame = pd.DataFrame(
        {
            "destination_number": accepted["destination_number"].astype(object),
            "message_id": accepted["message_id"].astype("int64"),
        }
    )
    if accepted["variant"].notna().any():
        frame["variant"] = accepted["variant"].astype(object)
    return frame.reset_index(drop=True)


class RowsInMemory:
    """An outcome sink that keeps the rows, for the XComs of a send without a results table."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def write(self, rows: pd.DataFrame) -> None:
        self.frames.append(rows)

    def xcom_frames(self) -> dict[str, pd.DataFrame]:
        return xcom_frames(_concat(self.frames))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Outcome rows in ``OUTCOME_COLUMNS``; ids and codes as exact nullable integers."""
    typed = []
    for frame in frames:
        if len(frame):
            frame = frame.reindex(columns=OUTCOME_COLUMNS)
            for column in ("message_id", "error_code"):  # before concat: no detour via float
                frame[column] = frame[column].astype("Int64")
            typed.append(frame)
    if not typed:
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    return pd.concat(typed, ignore_index=True)
