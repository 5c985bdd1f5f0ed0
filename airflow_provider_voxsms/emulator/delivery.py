"""The simulated delivery lifecycle: what ``A2PGetSmsHistory`` says of a message, and when.

Each accepted message is ``QUEUED`` for ``Faults.delivery_queued_s``, then ``DISPATCHED`` for
``Faults.delivery_dispatched_s``, then final. Its outcome is a pure function of its message id,
its number and the faults in force when it is read, so nothing more is stored per message and
a test knows the truth in advance:

- ``Faults.delivery_by_last_digit`` fixes the outcome by the number's last digit
  (e.g. ``"7=FAILED,8=EXPIRED,9=NEVER"``; ``NEVER``: stays ``DISPATCHED`` for ever);
- otherwise ``delivery_<status>_rate`` (and ``delivery_never_final_rate``) are shares of
  messages, drawn from a hash of the message id and ``Faults.seed`` (0 when unset), not from
  the fault RNG, so every read of the same message agrees;
- the rest are ``DELIVERED``. With the default faults every message is DELIVERED at once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# ``faults`` below is an ``emulator.faults.Faults`` and ``message`` an ``emulator.state.Message``;
# they are not imported, because ``Faults`` validates its settings with this module.
Faults = Message = Any

NEVER = "NEVER"  # an outcome: the message stays DISPATCHED
FINAL_OUTCOMES = ("FAILED", "EXPIRED", "REJECTED", "ABORTED", "UNKNOWN")
OUTCOMES = frozenset({"DELIVERED", *FINAL_OUTCOMES, NEVER})
ERROR_MESSAGES = {
    "FAILED": "Absent subscriber",
    "EXPIRED": "Validity period expired",
    "REJECTED": "Rejected by the operator",
    "ABORTED": "Aborted",
    "UNKNOWN": "No delivery report from the operator",
}
_MASK = (1 << 64) - 1


def parse_by_last_digit(spec: str | dict) -> dict[str, str]:
    """``"7=FAILED,9=NEVER"`` (or a dict) as {digit: outcome}; ValueError when malformed."""
    items = spec.items() if isinstance(spec, dict) else _pairs(str(spec))
    out = {}
    for digit, outcome in items:
        digit, outcome = str(digit).strip(), str(outcome).strip().upper()
        if len(digit) != 1 or not digit.isdigit() or outcome not in OUTCOMES:
            raise ValueError(
                f"delivery_by_last_digit: want digit=OUTCOME with OUTCOME one of "
                f"{sorted(OUTCOMES)}, got {digit}={outcome}"
            )
        out[digit] = outcome
    return out


def format_by_last_digit(mapping: dict[str, str]) -> str:
    return ",".join(f"{digit}={mapping[digit]}" for digit in sorted(mapping))


def outcome(message: Message, faults: Faults) -> str:
    """The final status ``message`` reaches (or ``NEVER``)."""
    if faults.delivery_by_last_digit:
        fixed = _by_last_digit(faults.delivery_by_last_digit)
        if message.destination_number[-1:] in fixed:
            return fixed[message.destination_number[-1]]
    draw = _uniform(message.message_id, faults.seed or 0)
    for name, rate in _rates(faults):
        if draw < rate:
            return name
        draw -= rate
    return "DELIVERED"


def _rates(faults: Faults) -> list[tuple[str, float]]:
    rates = [(name, getattr(faults, f"delivery_{name.lower()}_rate")) for name in FINAL_OUTCOMES]
    return [*rates, (NEVER, faults.delivery_never_final_rate)]


@lru_cache(maxsize=64)
def _by_last_digit(spec: str) -> dict[str, str]:
    return parse_by_last_digit(spec)


def status_at(message: Message, faults: Faults, now: float) -> tuple[str, str]:
    """``(delivery_status, error_message)`` of ``message`` at ``now`` (state clock seconds)."""
    queued_until = message.time + faults.delivery_queued_s
    if now < queued_until:
        return "QUEUED", ""
    if now < queued_until + faults.delivery_dispatched_s:
        return "DISPATCHED", ""
    final = outcome(message, faults)
    if final == NEVER:
        return "DISPATCHED", ""
    return final, ERROR_MESSAGES.get(final, "")


def _pairs(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for item in spec.split(","):
        if not item.strip():
            continue
        digit, sep, name = item.partition("=")
        if not sep:
            raise ValueError(f"delivery_by_last_digit: want digit=OUTCOME, got {item!r}")
        pairs.append((digit, name))
    return pairs


def _uniform(message_id: int, seed: int) -> float:
    """A uniform draw in [0, 1) from the message id (splitmix64): the same for every read."""
    z = (message_id * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)
