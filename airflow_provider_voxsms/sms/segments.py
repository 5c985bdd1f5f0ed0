"""How many SMS segments (billable fragments) a message text takes: GSM 03.38 or UCS-2 rules."""

from __future__ import annotations

from dataclasses import dataclass

MAX_TEXT_LENGTH = 1600

# GSM 03.38 default alphabet (one septet each) and its extension table (escape + char: two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class Segments:
    """The encoding a text needs, its length in that encoding's units, and the segment count."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    count: int


def count_segments(text: str) -> Segments:
    """Count the segments of ``text`` as the carrier bills them (0 for an empty text).

    A multi-part message never splits an escape sequence (GSM-7) or a surrogate pair (UCS-2)
    across two segments, so a long text can need one segment more than ``units / 153`` suggests.
    """
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return Segments("GSM-7", sum(costs), _pack(costs, GSM7_SINGLE, GSM7_MULTI))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return Segments("UCS-2", sum(costs), _pack(costs, UCS2_SINGLE, UCS2_MULTI))


def _pack(costs: list[int], single: int, multi: int) -> int:
    """Greedily fill segments of ``multi`` units with indivisible characters of the given costs."""
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments
