"""Phone numbers as log lines show them: the country code and the last two digits.

Task logs are kept for months and read by everyone who can see the DAG, so by default
(``log_numbers="masked"``) a recipient's number is shown as ``+44 ******** 12``: enough to tell
the country and to find the row in the outputs, which keep the full number (they are the
data). ``"full"`` shows numbers as they were written. A value without a country code (a
national number, a typo, a word) keeps only its last two characters: ``*********12``.
"""

from __future__ import annotations

import pandas as pd

from airflow_provider_voxsms.sms.numbers.plan import calling_codes

__all__ = ["LOG_NUMBERS", "check_log_numbers", "mask_number", "shown_number"]

LOG_NUMBERS = ("masked", "full")
_KEPT = 2  # trailing characters left visible
_SEPARATORS = str.maketrans("", "", " \t-./()")


def check_log_numbers(mode: str) -> str:
    """``mode`` if it is one of ``LOG_NUMBERS``; else ValueError."""
    if mode not in LOG_NUMBERS:
        raise ValueError(f"log_numbers is one of {LOG_NUMBERS}, got {mode!r}")
    return mode


def shown_number(value, mode: str = "masked", *, e164: bool = False) -> str:
    """``value`` as a log line may show it under ``log_numbers=mode``.

    :param e164: ``value`` is a normalised number (digits-only E.164, with or without "+").
    """
    if mode == "full":
        return str(value)
    return mask_number(value, e164=e164)


def mask_number(value, *, e164: bool = False) -> str:
    """``+CC ***...** NN`` for a number with a country code ("+" or "00" written, or ``e164``);
    otherwise every character but the last two starred (all of them for values of four
    characters or fewer, so a short value is never shown whole)."""
    text = "" if value is None else str(value).strip()
    digits = text.translate(_SEPARATORS)
    if digits.startswith("00") and not e164:
        digits = "+" + digits[2:]
    international = e164 or digits.startswith("+")
    digits = digits.removeprefix("+")
    if international and digits.isascii() and digits.isdigit():
        code = int(calling_codes(pd.Series([digits], dtype=object))[0])
        national = digits[len(str(code)) :] if code else ""
        if code and len(national) > _KEPT:
            return f"+{code} {'*' * (len(national) - _KEPT)} {national[-_KEPT:]}"
    return _starred(text)


def _starred(text: str) -> str:
    if len(text) <= 2 * _KEPT:
        return "*" * len(text)
    return "*" * (len(text) - _KEPT) + text[-_KEPT:]
