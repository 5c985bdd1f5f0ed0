"""The failed numbers as the page, the JSON and the CSV show them: masked unless asked.

Numbers are shown as the task logs show them (``+44 ******** 12``, :mod:`sms.numbers.mask`)
unless the user opts in with ``numbers=full``: everyone who may read the DAG's task instances
may open the page, and a screen is easily shared.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from airflow_provider_voxsms.sms.numbers.mask import mask_number

CSV_COLUMNS = ("stage", "destination_number", "input_number", "error_code", "description")
PAGE_ROWS = 50


def shown(row: dict, full: bool) -> dict:
    """``row`` with its numbers masked, unless ``full``."""
    if full:
        return row
    return {
        **row,
        "destination_number": _masked(row["destination_number"], e164=True),
        # a delivery row's "as written" is the number it went to
        "input_number": _masked(row["input_number"], e164=row["stage"] == "delivery"),
    }


def csv_lines(rows: Iterable[dict], full: bool) -> Iterator[str]:
    """A header, then one CSV line per row (numbers masked unless ``full``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(rows, 1):
        row = shown(row, full)
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        if count % 1000 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _masked(value, *, e164: bool) -> str | None:
    return None if value is None else mask_number(value, e164=e164)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
