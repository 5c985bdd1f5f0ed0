"""Request parameters as the Management API reads them: strings, ``;`` lists, loose booleans."""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping

from airflow_provider_voxsms.emulator import errors
from airflow_provider_voxsms.emulator.errors import ApiError

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def _invalid(msg: str) -> ApiError:
    return ApiError(errors.INVALID_ARGUMENTS, f"Invalid arguments: {msg}")


class Params:
    """Typed access to one request's parameters; every bad value raises ApiError 101."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def string(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None and required:
            raise _invalid(f"'{name}' is required")
        return value

    def items(self, name: str, required: bool = False) -> list[str] | None:
        """A ``;``-joined list; blanks are dropped."""
        raw = self.string(name, required)
        if raw is None:
            return None
        items = [x.strip() for x in raw.split(";") if x.strip()]
        if required and not items:
            raise _invalid(f"'{name}' is required")
        return items

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise _invalid(f"'{name}' must be a boolean")

    def integer(
        self, name: str, default: int | None, lo: int = 0, hi: int | None = None
    ) -> int | None:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _invalid(f"'{name}' must be an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise _invalid(f"'{name}' must be between {lo} and {hi}")
        return value

    def integers(self, name: str) -> list[int] | None:
        items = self.items(name)
        if items is None:
            return None
        try:
            return [int(x) for x in items]
        except ValueError:
            raise _invalid(f"'{name}' must be a list of integers") from None

    def date(self, name: str) -> float | None:
        """A ``yyyy-MM-dd HH:mm:ss`` UTC timestamp as seconds since the epoch."""
        raw = self.values.get(name)
        if raw is None or raw == "":
            return None
        try:
            return float(calendar.timegm(time.strptime(raw.strip(), DATE_FORMAT)))
        except ValueError:
            raise _invalid(f"'{name}' must look like 2024-01-31 23:59:59") from None


def format_date(ts: float) -> str:
    """Seconds since the epoch as the API's ``yyyy-MM-dd HH:mm:ss`` UTC string."""
    return time.strftime(DATE_FORMAT, time.gmtime(ts))
