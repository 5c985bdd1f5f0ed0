"""Repeated measurements (median, min, max) and the rows of the results table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Sample:
    """Values of one measurement over several runs, in ``unit``."""

    values: list[float] = field(default_factory=list)
    unit: str = "s"

    def add(self, value: float) -> float:
        self.values.append(float(value))
        return value

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@dataclass
class Row:
    """One line of the results table; ``met`` is None when the line has no target."""

    section: str
    what: str
    sample: Sample | None = None
    value: str | None = None  # a fixed text instead of a sample
    target: str = ""
    met: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        if self.sample is not None and self.sample.values:
            median = fmt(self.sample.median, self.sample.unit)
            runs = len(self.sample.values)
            spread = (
                f"{fmt(self.sample.low, self.sample.unit)} - "
                f"{fmt(self.sample.high, self.sample.unit)} ({runs} runs)"
                if runs > 1
                else "1 run"
            )
        else:
            median, spread = self.value or "-", ""
        met = {True: "yes", False: "**no**", None: ""}[self.met]
        return [self.section, self.what, median, spread, self.target, met, self.note]


HEADER = ["#", "measurement", "median", "min - max", "target", "met", "notes"]


def fmt(value: float, unit: str) -> str:
    """A value with its unit, with a sensible number of digits."""
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} µs"
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "x":
        return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x"
    if unit == "%":
        return f"{value:.0f} %"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit in ("/s", "rows/s", "recipients/s"):
        return f"{value:,.0f} {unit.lstrip('/') if unit != '/s' else '/s'}"
    return f"{value:,.3g} {unit}"


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of one call (perf_counter) and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
