"""Recipient preparation: result shape, accepted inputs, input errors, text checks, de-duplication
(the phone normalisation table is in numbers/test_normalise.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.sms.recipients import (
    PreparedRecipients,
    RecipientsError,
    prepare_recipients,
)

UK = "447443332212"
US = "14155552671"


def test_result_shape_and_order():
    prepared = prepare_recipients(
        ["+1 415 555 2671", "oops", "447443332212", None, "+44 7443 332212"], text="hi"
    )
    assert list(prepared.valid.columns) == ["phone", "text"]
    assert prepared.valid["phone"].tolist() == [US, UK]
    assert prepared.valid.index.tolist() == [0, 2]
    assert prepared.valid["text"].tolist() == ["hi", "hi"]
    assert list(prepared.invalid.columns) == ["row", "original", "phone", "reason"]
    assert prepared.invalid["row"].tolist() == [1, 3]
    assert prepared.invalid["original"].tolist() == ["oops", ""]
    assert (prepared.duplicates, prepared.total) == (1, 5)


@pytest.mark.parametrize(
    "recipients",
    [
        pd.DataFrame({"phone": ["+447443332212"]}),
        pd.Series(["+447443332212"]),
        ["+447443332212"],
        ("+447443332212",),
        [{"phone": "+447443332212"}],
    ],
    ids=["frame", "series", "list", "tuple", "dicts"],
)
def test_accepted_inputs(recipients):
    assert prepare_recipients(recipients, text="hi").valid["phone"].tolist() == [UK]


@pytest.mark.parametrize(
    "empty", [pd.DataFrame(), pd.DataFrame({"phone": []}), pd.Series([]), [], ()]
)
def test_empty_inputs(empty):
    prepared = prepare_recipients(empty, text="hi")
    assert (len(prepared.valid), len(prepared.invalid), prepared.duplicates, prepared.total) == (
        0,
        0,
        0,
        0,
    )


def test_frame_index_is_ignored():
    frame = pd.DataFrame({"phone": ["x", UK]}, index=["a", "b"])
    prepared = prepare_recipients(frame, text="hi")
    assert prepared.valid.index.tolist() == [1]
    assert prepared.invalid["row"].tolist() == [0]


# --- input errors -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["447443332212", 447443332212, {"phone": UK}, {UK}, object()])
def test_unsupported_type(value):
    with pytest.raises(RecipientsError) as err:
        prepare_recipients(value, text="hi")
    message = str(err.value)
    assert type(value).__name__ in message
    assert "DataFrame" in message and "Series" in message and "list of dicts" in message


def test_single_string_hint():
    with pytest.raises(RecipientsError, match="wrap a single number in a list"):
        prepare_recipients("447443332212", text="hi")


def test_missing_phone_column_names_existing_columns():
    frame = pd.DataFrame({"msisdn": [UK], "body": ["hi"]})
    with pytest.raises(RecipientsError) as err:
        prepare_recipients(frame, text="hi")
    message = str(err.value)
    assert "'phone'" in message and "'msisdn'" in message and "'body'" in message


def test_missing_column_suggests_close_name():
    with pytest.raises(RecipientsError, match="did you mean 'Phone'"):
        prepare_recipients(pd.DataFrame({"Phone": [UK]}), text="hi")


def test_missing_phone_key_in_dicts():
    with pytest.raises(RecipientsError) as err:
        prepare_recipients([{"number": UK, "msg": "hi"}], text="hi")
    assert "'phone'" in str(err.value) and "'number'" in str(err.value)


def test_missing_text_column():
    frame = pd.DataFrame({"phone": [UK], "body": ["hi"]})
    with pytest.raises(RecipientsError) as err:
        prepare_recipients(frame, text_column="message")
    message = str(err.value)
    assert "text_column" in message and "'message'" in message and "'body'" in message


def test_duplicate_column_names():
    frame = pd.DataFrame([[UK, US]], columns=["phone", "phone"])
    with pytest.raises(RecipientsError, match=r"duplicate column names: \['phone'\]"):
        prepare_recipients(frame, text="hi")


def test_mixed_dicts_and_values():
    with pytest.raises(RecipientsError, match="mixes dicts and plain values"):
        prepare_recipients([{"phone": UK}, US], text="hi")


@pytest.mark.parametrize(
    ("text", "text_column", "word"), [(None, None, "neither"), ("hi", "t", "both")]
)
def test_exactly_one_text_source(text, text_column, word):
    with pytest.raises(RecipientsError) as err:
        prepare_recipients([UK], text=text, text_column=text_column)
    message = str(err.value)
    assert "text=" in message and "text_column=" in message and word in message


def test_text_column_needs_rows_with_columns():
    with pytest.raises(RecipientsError, match="pass text= instead"):
        prepare_recipients([UK], text_column="text")
    with pytest.raises(RecipientsError, match="pass text= instead"):
        prepare_recipients(pd.Series([UK]), text_column="text")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty text"),
        ("  \n ", "whitespace only"),
        ("x" * 1601, "1601 characters (limit 1600)"),
        ("bad \ud800 text", "lone surrogate"),
        ("bell \x07", "control character U+0007"),
        (42, "not a string: int"),
    ],
)
def test_single_text_is_refused_before_anything(text, fragment):
    with pytest.raises(RecipientsError) as err:
        prepare_recipients([UK], text=text)
    assert fragment in str(err.value)


def test_single_text_allowed_edges():
    prepared = prepare_recipients([UK], text="x" * 1600)
    assert len(prepared.valid) == 1
    prepared = prepare_recipients([UK], text="line\nbreak\r\ttab\fpage")
    assert len(prepared.valid) == 1


def test_bad_texts_in_a_column_are_invalid_rows():
    frame = pd.DataFrame(
        {
            "phone": [UK, UK, UK, UK, UK, "junk"],
            "text": ["ok", np.nan, " ", "x" * 1601, "ctl\x00", ""],
        }
    )
    prepared = prepare_recipients(frame, text_column="text")
    assert prepared.valid["text"].tolist() == ["ok"]
    assert prepared.invalid["reason"].tolist() == [
        "empty text",
        "empty text (whitespace only)",
        "text too long: 1601 characters (limit 1600)",
        "text contains control character U+0000",
        "contains letters",  # the phone reason comes first
    ]


def test_lone_surrogate_text_in_dicts():
    rows = [{"phone": UK, "text": "a\ud800"}, {"phone": US, "text": "fine"}]
    prepared = prepare_recipients(rows, text_column="text")
    assert prepared.valid["phone"].tolist() == [US]
    assert "lone surrogate" in prepared.invalid["reason"].iloc[0]


# --- de-duplication -------------------------------------------------------------------------


def test_same_phone_same_text_is_sent_once():
    prepared = prepare_recipients(["+44 7443 332212", UK, 447443332212.0, US], text="hi")
    assert prepared.valid["phone"].tolist() == [UK, US]
    assert prepared.duplicates == 2


SAME_NUMBER_ROWS = [
    {"phone": UK, "text": "a"},
    {"phone": "+44 7443 332212", "text": "b"},
    {"phone": "0044 7443 332212", "text": "a"},
    {"phone": "bad", "text": "a"},
    {"phone": "bad", "text": "a"},
]


def test_same_phone_different_text_is_two_messages_when_deduped_by_number_and_text():
    prepared = prepare_recipients(SAME_NUMBER_ROWS, text_column="text", dedupe="number_and_text")
    assert prepared.valid[["phone", "text"]].values.tolist() == [[UK, "a"], [UK, "b"]]
    assert prepared.duplicates == 1 and prepared.differing is None
    assert len(prepared.invalid) == 2  # invalid rows are reported, never counted as duplicates
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates


def test_one_message_per_number_by_default_whatever_the_texts():
    """ "Hi Bob" and "Hi Robert" to one number: the first row wins, the rest are duplicates,
    and the number is counted among those whose copies had another text."""
    prepared = prepare_recipients(SAME_NUMBER_ROWS, text_column="text")
    assert prepared.valid[["phone", "text"]].values.tolist() == [[UK, "a"]]
    assert prepared.duplicates == 2 and prepared.differing.tolist() == [UK]
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates


def test_an_unknown_dedupe_mode_is_refused():
    with pytest.raises(RecipientsError, match="dedupe is one of"):
        prepare_recipients([UK], text="hi", dedupe="text")


def test_smart_encoding_merges_texts_that_become_equal_and_counts_the_segments_saved():
    rows = [
        {"phone": UK, "text": "it\u2019s " + "x" * 100},  # UCS-2: 2 segments; GSM-7: 1
        {"phone": "447443332213", "text": "it's " + "x" * 100},
        {"phone": "447443332214", "text": "\u041f\u0440\u0438\u0432\u0435\u0442 \u2014"},
    ]
    prepared = prepare_recipients(rows, text_column="text", smart_encoding=True)
    valid = prepared.valid
    assert valid["text"].nunique() == 2, "the curly and the straight text are one text now"
    assert valid["text"].iloc[0] == "it's " + "x" * 100
    assert valid["smart_saved"].tolist() == [1, -1, -1]


def test_accounting_invariant_on_a_mess():
    values = [UK, UK, None, "x", US, "07443332212", US, 1.5, "+1 415 555 2671"]
    prepared = prepare_recipients(values, text="hi")
    assert isinstance(prepared, PreparedRecipients)
    assert prepared.total == len(values)
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates
    assert not prepared.valid.duplicated().any()


def test_a_list_holding_a_missing_value_is_shown_as_a_list():
    prepared = prepare_recipients([[np.nan]], text="hi")
    assert prepared.invalid[["original", "reason"]].values.tolist() == [
        ["[nan]", "not a phone number: list"]
    ]


# --- null markers -----------------------------------------------------------------------------

MARKERS = ["", "NULL", "null", "None", "NA", "N/A", "NaN", "\\N", " n/a ", "<NA>"]
MARKED = [f"4474433322{i:02d}" for i in range(len(MARKERS))]


@pytest.mark.parametrize("shape", ["frame", "dicts", "object frame"])
def test_a_null_marker_in_a_placeholder_column_is_an_empty_placeholder(shape):
    """The words exports write for "no value", in any case and trimmed, are missing values:
    as for a real NULL, the row is invalid, never rendered into "Hi NULL"."""
    names = [*MARKERS, "Nat", "Nana", None]
    phones = [*MARKED, US, "447443332290", "447443332291"]
    rows = [{"phone": p, "name": n} for p, n in zip(phones, names, strict=True)]
    recipients = {
        "frame": pd.DataFrame(rows).astype({"name": "str"}),
        "dicts": rows,
        "object frame": pd.DataFrame(rows, dtype=object),
    }[shape]
    prepared = prepare_recipients(recipients, text="Hi {name}")
    assert prepared.valid["text"].tolist() == ["Hi Nat", "Hi Nana"], "names are not markers"
    assert prepared.invalid["reason"].tolist() == ["placeholder {name} is empty"] * 11


def test_a_null_marker_in_a_text_column_is_an_empty_text():
    frame = pd.DataFrame({"phone": [*MARKED, US], "text": [*MARKERS, "none of that"]})
    prepared = prepare_recipients(frame, text_column="text")
    assert prepared.valid["text"].tolist() == ["none of that"]
    assert set(prepared.invalid["reason"]) == {"empty text"}


@pytest.mark.parametrize("shape", ["list", "series", "frame"])
def test_a_null_marker_in_the_phone_column_is_an_empty_number_shown_empty(shape):
    values = [*MARKERS, UK]
    recipients = {
        "list": values,
        "series": pd.Series(values, dtype="str"),
        "frame": pd.DataFrame({"phone": values}),
    }[shape]
    prepared = prepare_recipients(recipients, text="hi")
    assert prepared.valid["phone"].tolist() == [UK]
    assert set(prepared.invalid["reason"]) == {"empty"}
    assert set(prepared.invalid["original"]) == {""}, "the outputs' input_number: missing"


def test_null_markers_reach_variants_placeholders_too():
    from airflow_provider_voxsms.sms.variants import Variants

    variants = Variants.parse({"A": "Hi {name}", "B": "Hey {name}"}, seed="s")
    rows = [{"phone": p, "name": m} for p, m in zip(MARKED, MARKERS, strict=True)]
    prepared = prepare_recipients(rows, variants=variants)
    assert prepared.valid.empty
    assert set(prepared.invalid["reason"]) == {"placeholder {name} is empty"}
