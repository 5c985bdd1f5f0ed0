"""Smart encoding: look-alikes only when the whole text becomes GSM-7; the table as documented."""

from __future__ import annotations

import pytest

from airflow_provider_voxsms.sms.segments import count_segments
from airflow_provider_voxsms.sms.smart_encoding import REPLACEMENTS, replaceable, smart_encode


def test_the_issues_example_becomes_gsm7_in_one_segment():
    text = "Hi Ann \u2014 it\u2019s \u201cready\u201d\u2026 see\u00a0you"
    assert count_segments(text).encoding == "UCS-2"
    smart = smart_encode(text)
    assert smart.text == 'Hi Ann - it\'s "ready"... see you'
    assert smart.changed and count_segments(smart.text) == count_segments(smart.text)
    assert count_segments(smart.text).encoding == "GSM-7" and count_segments(smart.text).count == 1


def test_a_text_that_stays_ucs2_is_sent_unchanged():
    text = "\u041f\u0440\u0438\u0432\u0435\u0442 \u2014 \u201cok\u201d"  # Cyrillic stays UCS-2
    assert smart_encode(text).text == text and not smart_encode(text).changed
    assert replaceable(text) == ()


@pytest.mark.parametrize("char", sorted(REPLACEMENTS))
def test_every_replacement_gives_gsm7(char):
    smart = smart_encode(f"a{char}b")
    assert smart.changed and count_segments(smart.text).encoding == "GSM-7"
    assert smart.text == f"a{REPLACEMENTS[char]}b"


def test_the_table_covers_what_the_issue_lists():
    listed = "\u2018\u2019\u201a\u201b\u2032\u201c\u201d\u201e\u201f\u2033\u2013\u2014\u2015\u2212"
    listed += "\u2026\u00a0\u202f\u205f\u3000\u200b\ufeff\u00ad"
    listed += "".join(map(chr, range(0x2000, 0x200B)))
    assert set(listed) == set(REPLACEMENTS)
    assert {REPLACEMENTS[c] for c in "\u200b\ufeff\u00ad"} == {""}


def test_segments_saved_and_what_a_plan_would_warn_about():
    text = "Your order \u2014 " + "x" * 100  # 114 characters: 2 UCS-2 segments, 1 in GSM-7
    smart = smart_encode(text)
    assert smart.segments_saved == 1
    assert replaceable(text) == ("\u2014",)
    assert smart_encode("plain GSM-7 text") == smart_encode("plain GSM-7 text")
    assert not smart_encode("plain GSM-7 text").changed
