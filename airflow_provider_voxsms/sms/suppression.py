"""Opt-out lists: numbers that must never be texted, normalised exactly like recipients.

A list is given as a list or tuple, a Series, or a DataFrame (its ``phone`` column, else its
first column). Its numbers go through :func:`.numbers.normalise_phones` with the campaign's
``default_region`` and ``number_check``, so ``+44 7443 332212`` suppresses ``07443332212``.
Entries that are not usable numbers suppress nothing; they are counted so the task can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from airflow_provider_voxsms.errors import RecipientsError
from airflow_provider_voxsms.sms.numbers import normalise_phones


@dataclass(frozen=True)
class OptOuts:
    """The normalised opt-out numbers, and how many entries were not usable numbers."""

    numbers: pd.Index
    unusable: int

    def matches(self, phones: pd.Series) -> pd.Series:
        """Which of these normalised numbers opted out."""
        return phones.isin(self.numbers)


def opt_outs(
    lists: list, *, default_region: str | None = None, number_check: str = "possible"
) -> OptOuts:
    """Normalise every entry of ``lists`` (each in any of the accepted shapes) into one set."""
    values = [_entries(given) for given in lists if given is not None]
    if not values:
        return OptOuts(pd.Index([], dtype=object), 0)
    entries = pd.concat(values, ignore_index=True)
    numbers, _ = normalise_phones(entries, default_region, number_check=number_check)
    usable = numbers.dropna()
    return OptOuts(pd.Index(usable.unique(), dtype=object), len(numbers) - len(usable))


def _entries(given) -> pd.Series:
    if isinstance(given, pd.DataFrame):
        if given.columns.empty:
            return pd.Series([], dtype=object)
        column = "phone" if "phone" in given.columns else given.columns[0]
        return given[column].astype(object).reset_index(drop=True)
    if isinstance(given, pd.Series):
        return given.astype(object).reset_index(drop=True)
    if isinstance(given, list | tuple | set | frozenset):
        return pd.Series(list(given), dtype=object)
    raise RecipientsError(
        "suppression_list must be a list of numbers, a Series or a DataFrame (its 'phone' "
        f"column, else its first column); got {type(given).__name__}"
    )
