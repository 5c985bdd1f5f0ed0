"""Fault injection as configuration: what the emulator should do wrong, and how often."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_voxsms.emulator.delivery import format_by_last_digit, parse_by_last_digit

_NOT_NEGATIVE = (
    "latency_ms",
    "retry_after_s",
    "slow_response_s",
    "history_lag_s",
    "http_503_burst",
    "delivery_queued_s",
    "delivery_dispatched_s",
)
_DELIVERY_RATES = (
    "delivery_failed_rate",
    "delivery_expired_rate",
    "delivery_rejected_rate",
    "delivery_aborted_rate",
    "delivery_unknown_rate",
    "delivery_never_final_rate",
)


@dataclass(frozen=True)
class Faults:
    """The misbehaviour to inject; the defaults inject nothing.

    Rates are probabilities per API request, drawn from one RNG seeded with ``seed``.

    :param latency_ms: added to every API request before it is handled.
    :param http_429_rate: answer HTTP 429 (plain text, ``Retry-After``) before authentication.
    :param http_503_rate: answer HTTP 503 (plain text, as a gateway would) before authentication.
    :param http_503_burst: the next N A2PSendSms requests answer HTTP 503 like ``http_503_rate``
        (not processed), then requests are served normally. A countdown, not a rate: setting
        this field (``set_faults``, ``POST /_emulator/faults``) re-arms it to N, ``reset``
        re-arms it to the initial value (0 unless the server started with a burst).
    :param error_340_rate: answer API error 340 "Rate limit exceeded" (HTTP 200).
    :param error_416_rate: answer API error 416 "Repeat after N seconds", N = ``retry_after_s``.
    :param retry_after_s: the N in error 416 and the ``Retry-After`` header of HTTP 429.
    :param insufficient_money_after: once this many messages were accepted, every A2PSendSms
        answers error 127 until the value is lifted (set to None: a "top-up"). A request that
        starts below the limit is processed whole.
    :param blocked_numbers: destinations that come back in ``failed`` with code 509.
    :param process_then_500_rate: A2PSendSms is processed and stored, then HTTP 500 is returned:
        the ambiguous case where a retry sends the messages twice.
    :param reset_connection_rate: A2PSendSms is NOT processed and the connection is cut after
        the response headers: the client sees a broken connection and cannot tell what happened.
    :param slow_response_s: A2PSendSms sleeps this long, then is processed and answered (to
        trip client read timeouts); other methods answer at once, as a history look-up would.
    :param history_lag_s: an accepted message shows in ``A2PGetSmsHistory`` only this many
        seconds (of the state's clock) after it was accepted; the lag in force when a message is
        accepted is the one it gets. ``/_emulator/messages`` shows every message at once.
    :param delivery_queued_s: an accepted message is ``QUEUED`` in the history this long (of
        the state's clock), then ``DISPATCHED`` for ``delivery_dispatched_s``, then final
        (see ``emulator/delivery.py``). Both 0 (the default): final at once.
    :param delivery_failed_rate: share of messages that end ``FAILED``; likewise
        ``delivery_expired_rate``, ``delivery_rejected_rate``, ``delivery_aborted_rate`` and
        ``delivery_unknown_rate``; ``delivery_never_final_rate``: share that stay
        ``DISPATCHED``. Per message, not per request: drawn from a hash of the message id and
        ``seed`` (0 when None), so every read agrees; they add up to at most 1, the rest is
        ``DELIVERED``.
    :param delivery_by_last_digit: outcomes fixed by the number's last digit, before the rates:
        ``"7=FAILED,8=EXPIRED,9=NEVER"`` (``NEVER``: stays ``DISPATCHED``); a dict works too.
    :param seed: seed of the RNG behind the rates; None draws a random seed.
    """

    latency_ms: int = 0
    http_429_rate: float = 0.0
    http_503_rate: float = 0.0
    http_503_burst: int = 0
    error_340_rate: float = 0.0
    error_416_rate: float = 0.0
    retry_after_s: int = 1
    insufficient_money_after: int | None = None
    blocked_numbers: frozenset[str] = field(default_factory=frozenset)
    process_then_500_rate: float = 0.0
    reset_connection_rate: float = 0.0
    slow_response_s: float = 0.0
    history_lag_s: float = 0.0
    delivery_queued_s: float = 0.0
    delivery_dispatched_s: float = 0.0
    delivery_failed_rate: float = 0.0
    delivery_expired_rate: float = 0.0
    delivery_rejected_rate: float = 0.0
    delivery_aborted_rate: float = 0.0
    delivery_unknown_rate: float = 0.0
    delivery_never_final_rate: float = 0.0
    delivery_by_last_digit: str = ""
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocked_numbers", frozenset(map(str, self.blocked_numbers)))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_rate") and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{f.name} must be between 0 and 1, got {value!r}")
            if f.name in _NOT_NEGATIVE and value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value!r}")
        if sum(float(getattr(self, name)) for name in _DELIVERY_RATES) > 1.0 + 1e-9:
            raise ValueError(f"the delivery rates ({', '.join(_DELIVERY_RATES)}) exceed 1 together")
        by_digit = parse_by_last_digit(self.delivery_by_last_digit or "")
        object.__setattr__(self, "delivery_by_last_digit", format_by_last_digit(by_digit))
        if type(self.http_503_burst) is not int:
            raise ValueError(f"http_503_burst must be an integer, got {self.http_503_burst!r}")

    def patched(self, changes: dict[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown names or bad values raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (blocked numbers as a sorted list)."""
        data = dataclasses.asdict(self)
        data["blocked_numbers"] = sorted(self.blocked_numbers)
        return data
