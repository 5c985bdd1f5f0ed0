"""Smart encoding: typographic characters that force UCS-2 replaced by their GSM-7 look-alikes.

One curly quote or dash turns a whole message into UCS-2, where a segment holds 70 characters
instead of 160: a 100-character notice costs two segments instead of one. Smart encoding (as
Twilio's) replaces the characters of :data:`REPLACEMENTS` when that makes the whole text GSM-7;
a text that would stay UCS-2 (it has Cyrillic, emoji, ...) is sent unchanged, so no meaning is
lost where nothing is saved. Without it, :func:`replaceable` tells the plan what it would save.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_voxsms.sms.segments import count_segments

__all__ = ["REPLACEMENTS", "SmartText", "replaceable", "smart_encode"]

#: What replaces each character; an empty string removes it.
REPLACEMENTS: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),  # single quotes, prime
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),  # double quotes, double prime
    **dict.fromkeys("\u2013\u2014\u2015\u2212", "-"),  # en and em dash, bar, minus
    "\u2026": "...",  # ellipsis
    # no-break, en/em and the other fixed-width spaces, narrow no-break, math, ideographic
    **dict.fromkeys(
        "\u00a0" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000", " "
    ),
    **dict.fromkeys("\u200b\ufeff\u00ad", ""),  # zero-width space, BOM, soft hyphen
}
_TABLE = str.maketrans(REPLACEMENTS)


@dataclass(frozen=True)
class SmartText:
    """A text after smart encoding: what is sent, whether it changed, the segments it saves."""

    text: str
    changed: bool
    segments_saved: int


def smart_encode(text: str) -> SmartText:
    """``text`` with :data:`REPLACEMENTS` applied when that makes it GSM-7, else unchanged."""
    replaced = text.translate(_TABLE)
    if replaced == text:
        return SmartText(text, False, 0)
    after = count_segments(replaced)
    if after.encoding != "GSM-7":
        return SmartText(text, False, 0)
    return SmartText(replaced, True, count_segments(text).count - after.count)


def replaceable(text: str) -> tuple[str, ...]:
    """The characters of ``text`` that alone make it UCS-2 (smart encoding would replace them
    and the text would be GSM-7), in order of first use; empty when there are none."""
    if not smart_encode(text).changed:
        return ()
    return tuple(dict.fromkeys(ch for ch in text if ch in REPLACEMENTS))
