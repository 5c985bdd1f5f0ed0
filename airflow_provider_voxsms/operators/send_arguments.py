"""The send operator's arguments checked when the DAG is parsed: what no run could do fails
there, with a message that names the parameter and the fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_provider_voxsms.sms.model import MAX_BATCH_SIZE
from airflow_provider_voxsms.sms.numbers.mask import LOG_NUMBERS
from airflow_provider_voxsms.sms.variants import Variants
from airflow_provider_voxsms.sms.window import SendWindow
from airflow_provider_voxsms.storage.results import outcomes_table


def check_arguments(op: Any) -> SendWindow | None:
    """Raise ``ValueError`` naming the first broken rule of ``op``'s arguments (an
    ``A2PSendSmsOperator``); return its parsed send window."""
    window = None
    sources = [x is not None for x in (op.recipients, op.recipients_sql, op.recipients_path)]
    rules = [
        (
            sum(sources) != 1,
            "give exactly one of recipients= (rows or an XComArg), recipients_sql= (with "
            "recipients_conn_id) or recipients_path= (CSV or Parquet).",
        ),
        (
            (op.recipients_sql is None) != (op.recipients_conn_id is None),
            "recipients_sql and recipients_conn_id go together (the query and the "
            "connection it runs on).",
        ),
        (
            _not_positive(op.recipients_chunk_rows),
            f"recipients_chunk_rows must be >= 1, got {op.recipients_chunk_rows}.",
        ),
        (
            sum(x is not None for x in (op.text, op.text_column, op.text_variants)) != 1,
            "give exactly one of text= (one message for all), text_column= (a column holding "
            "each row's message) or text_variants= (texts by variant).",
        ),
        (
            not 1 <= op.batch_size <= MAX_BATCH_SIZE,
            f"batch_size must be 1..{MAX_BATCH_SIZE} (A2PSendSms takes at most 100 numbers "
            f"per request), got {op.batch_size}.",
        ),
        (
            op.max_concurrency < 1,
            f"max_concurrency must be >= 1, got {op.max_concurrency}.",
        ),
        (
            op.requests_per_second is not None and op.requests_per_second <= 0,
            f"requests_per_second must be > 0 or None, got {op.requests_per_second}.",
        ),
        (
            op.fail_on_failed_ratio is not None and not 0 <= op.fail_on_failed_ratio <= 1,
            f"fail_on_failed_ratio is a share in 0..1, got {op.fail_on_failed_ratio}.",
        ),
        (
            op.settle_delay_s < 0 or op.settle_rounds < 0,
            "settle_delay_s and settle_rounds must not be negative, got "
            f"{op.settle_delay_s} and {op.settle_rounds}.",
        ),
        (
            (op.suppression_sql is None) != (op.suppression_conn_id is None),
            "suppression_sql and suppression_conn_id go together (the query and the "
            "connection it runs on); give both or neither.",
        ),
        (
            op.outside_window not in ("skip", "wait"),
            f"outside_window is 'skip' or 'wait', got {op.outside_window!r}.",
        ),
        (
            op.outside_window == "wait" and not (op.send_window and op.ledger_conn_id),
            "outside_window='wait' needs send_window and ledger_conn_id: the task resumes "
            "from the send ledger after each wait, so nothing is sent twice.",
        ),
        (
            op.dedupe not in ("number", "number_and_text"),
            f"dedupe is 'number' or 'number_and_text', got {op.dedupe!r}.",
        ),
        (
            op.frequency_cap is not None and not _is_cap(op.frequency_cap),
            "frequency_cap is (count, timedelta), e.g. (1, timedelta(hours=24)), with count "
            f">= 1 and a positive window; got {op.frequency_cap!r}.",
        ),
        (
            op.frequency_cap is not None and not op.ledger_conn_id,
            "frequency_cap needs ledger_conn_id: the ledger counts what every campaign sent "
            "to each number, and judges a number when it is claimed.",
        ),
        (
            op.validity_period is not None and not (seconds(op.validity_period) or 0) > 0,
            "validity_period is a positive timedelta or number of seconds, got "
            f"{op.validity_period!r}.",
        ),
        (
            op.max_segments is not None and _not_positive(op.max_segments),
            f"max_segments must be >= 1, got {op.max_segments}.",
        ),
        (
            op.log_numbers not in LOG_NUMBERS,
            f"log_numbers is 'masked' or 'full', got {op.log_numbers!r}.",
        ),
    ]
    try:
        if op.results_conn_id is not None:
            outcomes_table(op.results_table_prefix)
    except ValueError as err:
        rules.append((True, f"results_table_prefix: {err}"))
    if op.text_variants is not None and not _templated(op.text_variants):
        try:
            Variants.parse(op.text_variants, op.variant_weights, op.holdout, seed="check")
        except ValueError as err:
            rules.append((True, str(err)))
    try:
        window = SendWindow.parse(op.send_window, op.window_timezone) if op.send_window else None
    except ValueError as err:
        rules.append((True, str(err)))
    for broken, message in rules:
        if broken:
            raise ValueError(f"{op.task_id}: {message}")
    return window


def _not_positive(value: Any) -> bool:
    """True for anything but an integer >= 1 (a bool is no count)."""
    return isinstance(value, bool) or not isinstance(value, int) or value < 1


def seconds(value: Any) -> float | None:
    """A ``timedelta`` or a number of seconds as seconds (None stays None; anything else,
    such as a bool or a string, is not a duration: None)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _is_cap(cap: Any) -> bool:
    """A ``(count, timedelta)`` pair with a count >= 1 and a positive window."""
    if not isinstance(cap, tuple | list) or len(cap) != 2:
        return False
    count, window = cap
    return not _not_positive(count) and isinstance(window, timedelta) and window.total_seconds() > 0


def _templated(value: Any) -> bool:
    """Whether a templated argument still holds Jinja or an XComArg (checked once rendered)."""
    if not isinstance(value, dict):
        return True
    return any("{{" in str(v) for v in value.values())
