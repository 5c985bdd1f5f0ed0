"""The time zones of phone numbers, as phonenumbers' ``time_zones_for_number`` gives them.

By the longest listed prefix for fixed-line (and, in a few countries, mobile) numbers, the
country's zones for other types, none for a number in no known range. They are computed a
country at a time, with :func:`.plan.number_types` in place of the per-number type check
(~35 us a number). Next to the numbering plan, this is the one module reading phonenumbers'
data: its time-zone table.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from phonenumbers import PhoneNumberType, is_number_type_geographical
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from airflow_provider_voxsms.sms.numbers.plan import number_types

__all__ = ["UNKNOWN_ZONE", "zones_of"]

UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers when it knows no zone


def zones_of(numbers: pd.Series, fallback_zone: str) -> pd.Series:
    """The time zones (a tuple) of each digits-only E.164 number, as phonenumbers'
    ``time_zones_for_number`` gives them, computed a country at a time; ``(fallback_zone,)``
    where it knows none."""
    codes, kinds = number_types(numbers)
    digits = pd.Series(numbers.astype(object).to_numpy(), dtype=object).astype(str)
    found = np.full(len(digits), None, dtype=object)
    geographic = _geographic(codes, kinds)
    todo = np.flatnonzero(geographic)
    for length in range(TIMEZONE_LONGEST_PREFIX, 0, -1):  # the longest listed prefix wins
        if not len(todo):
            break
        hit = digits.iloc[todo].str.slice(0, length).map(_KNOWN_ZONES).to_numpy(object)
        known = pd.notna(hit)
        found[todo[known]] = hit[known]
        todo = todo[~known]
    country = np.flatnonzero(~geographic & (kinds != PhoneNumberType.UNKNOWN))
    found[country] = [_country_zones(code) for code in codes[country].tolist()]
    fallback = (fallback_zone,)
    return pd.Series([zones or fallback for zones in found], index=numbers.index, dtype=object)


def _geographic(codes: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Rows whose type is geographical in their country (zones by prefix), judged per pair."""
    if not len(codes):
        return np.zeros(0, dtype=bool)
    pairs, which = np.unique(np.stack([codes, kinds]), axis=1, return_inverse=True)
    return np.array(
        [is_number_type_geographical(kind, code) for code, kind in pairs.T.tolist()], dtype=bool
    )[which.ravel()]


# Prefix -> its zones, without phonenumbers' "unknown" marker (a prefix with only that is absent).
_KNOWN_ZONES = {
    prefix: known
    for prefix, zones in TIMEZONE_DATA.items()
    if (known := tuple(zone for zone in zones if zone != UNKNOWN_ZONE))
}


@cache
def _country_zones(code: int) -> tuple[str, ...]:
    """The zones of a calling code as a whole (``_country_level_time_zones_for_number``)."""
    text = str(code)
    return next(
        (_KNOWN_ZONES[text[:n]] for n in range(len(text), 0, -1) if text[:n] in _KNOWN_ZONES), ()
    )
