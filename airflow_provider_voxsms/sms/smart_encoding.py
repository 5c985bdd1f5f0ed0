"""Smart encoding: typographic characters that force UCS-2 replaced by their GSM-7 look-alikes.

One curly quote or dash turns a whole message into UCS-2, where a segment holds 70 characters
instead of 160: a 100-character notice costs two segments instead of one. Smart encoding (as
Twilio's) replaces the characters of :data:`REPLACEMENTS` when that makes the whole text GSM-7;
a text that would stay UCS-2 (it has Cyrillic, emoji, ...) is sent unchanged, so no meaning is
lost where nothing is saved. Without it, :func:`replaceable` tells the plan what it would save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from airflow_provider_voxsms.sms.segments import MAX_TEXT_LENGTH, count_segments

__all__ = ["REPLACEMENTS", "SmartText", "encode_texts", "replaceable", "smart_encode", "would_save"]

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
    if replaced == text or len(replaced) > MAX_TEXT_LENGTH:
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


def encode_texts(codes: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Smart-encode rows given as ``codes`` into their distinct ``texts`` (each text is looked
    at once): the rows' new codes and texts (texts that became equal are merged), and the
    segments each row saves (-1 where its text is unchanged)."""
    smart = [smart_encode(text) for text in texts]
    new_codes, new_texts = pd.factorize(pd.Series([s.text for s in smart], dtype=object))
    saved = np.array([s.segments_saved if s.changed else -1 for s in smart] + [-1], np.int16)
    rows = np.where(codes >= 0, new_codes[codes], -1) if len(texts) else codes
    return rows, list(new_texts), saved[codes]


def would_save(texts: pd.Series) -> tuple[tuple[str, ...], int, int]:
    """What smart encoding would do to these messages (a categorical column, one row per
    message): the characters that alone make some of them UCS-2, how many messages those are,
    and the segments it would save."""
    chars: dict[str, None] = {}
    messages = saved = 0
    for text, count in texts.value_counts(sort=False).items():
        if count and (found := replaceable(text)):
            chars.update(dict.fromkeys(found))
            messages += int(count)
            saved += int(count) * smart_encode(text).segments_saved
    return tuple(chars), messages, saved
