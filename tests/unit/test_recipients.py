"""Recipient preparation: phone normalisation table, input errors, text checks, de-duplication."""

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

FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}

# (input, default_region, expected phone or None, substring of the reason when invalid)
PHONES = [
    ("+44 7443 332212", None, UK, None),
    ("0044-7443-332212", None, UK, None),
    ("(+44) 7443.332212", None, UK, None),
    ("+44 (0)7443 332212", None, UK, None),
    ("+44/7443/332212", None, UK, None),
    (" 447443332212 ", None, UK, None),
    ("447443332212", "GB", UK, None),
    ("+44 7443 332212", "GB", UK, None),
    (447443332212, None, UK, None),
    (447443332212.0, None, UK, None),
    (np.int64(447443332212), None, UK, None),
    (np.float64(447443332212), None, UK, None),
    ("447443332212.0", None, UK, None),
    ("44\u00a07443\u2009332212", None, UK, None),
    ("\u200e+44 7443 332212", None, UK, None),
    ("+44 7443 332212".translate(FULL_WIDTH), None, UK, None),
    ("07443 332212".translate(FULL_WIDTH), "GB", UK, None),
    ("٤٤٧٤٤٣٣٣٢٢١٢", None, UK, None),
    ("+1 (415) 555-2671", None, US, None),
    ("1-415-555-2671", None, US, None),
    ("415-555-2671", "US", US, None),
    ("(415) 555-2671", "US", US, None),
    ("14155552671", "US", US, None),
    ("07443 332212", "GB", UK, None),
    ("(0)7443 332212", "GB", UK, None),
    ("7443 332212", "GB", UK, None),
    ("+1 415 555 2671", "GB", US, None),
    ("14155552671", "GB", US, None),
    ("07443 332212", None, None, "national format: set default_region"),
    ("(0)7443 332212", None, None, "national format: set default_region"),
    ("07443 33", "GB", None, "too short for +44 (GB): 6 digits after +44 is a local number"),
    ("4155552671", "GB", None, "impossible for +44 (GB): no 10-digit number there begins with 415"),
    ("4.47443332212e11", None, None, "scientific notation"),
    ("4.47443E+11", None, None, "scientific notation"),
    (447443332212.5, None, None, "not a whole number"),
    (-447443332212, None, None, "negative number"),
    (float("inf"), None, None, "not a finite number"),
    (1e16, None, None, "too long"),
    (np.nan, None, None, "empty"),
    (None, None, None, "empty"),
    (pd.NA, None, None, "empty"),
    ("", None, None, "empty"),
    ("   ", None, None, "empty"),
    ("nan", None, None, "empty"),
    ("None", None, None, "empty"),
    ("abc", None, None, "contains letters"),
    ("+44 7443 332212 ext 5", None, None, "contains letters"),
    ("+44#7443332212", None, None, "unexpected character '#'"),
    ("44+7443332212", None, None, "misplaced '+'"),
    ("+", None, None, "no digits"),
    ("12345", None, None, "too short for +1 (US): 4 digits after +1 (at least 10)"),
    ("1234567890123456", None, None, "too long for +1 (US): 15 digits after +1 (at most 10)"),
    ("+43 1234", None, None, "too short: 6 digits (E.164 needs 8-15)"),
    ("+44 7443 3322", None, None, "too short for +44 (GB): 8 digits after +44 is a local number"),
    ("+44 4443 332212", None, None, "impossible for +44 (GB): no 10-digit number there"),
    ("+44 0 7443 332212", None, UK, None),  # phonenumbers drops the trunk 0, so do we
    ("+39 06 1234 5678", None, "390612345678", None),  # Italy keeps it
    ("+2812345678", None, None, "unknown country code"),
    ("+0044 7443 332212", None, None, "unknown country code"),
    (True, None, None, "not a phone number: bool"),
    (b"447443332212", None, None, "not a phone number: bytes"),
    ("\ud800", None, None, "lone surrogate"),
]


@pytest.mark.parametrize(("value", "region", "expected", "reason"), PHONES)
def test_phone_normalisation(value, region, expected, reason):
    prepared = prepare_recipients([value], text="hi", default_region=region)
    assert prepared.total == 1
    if expected is not None:
        assert prepared.valid["phone"].tolist() == [expected]
        assert prepared.invalid.empty
    else:
        assert prepared.valid.empty
        [row] = prepared.invalid.to_dict("records")
        assert row["row"] == 0
        assert reason in row["reason"]
        shown = "" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)
        assert row["original"] == shown.encode("utf-8", "backslashreplace").decode()


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


def test_numeric_columns_from_csv():
    frame = pd.DataFrame({"phone": [447443332212.0, np.nan, 14155552671.0, 0.5]})
    prepared = prepare_recipients(frame, text="hi")
    assert prepared.valid["phone"].tolist() == [UK, US]
    assert prepared.invalid["original"].tolist() == ["", "0.5"]
    ints = pd.DataFrame({"phone": pd.array([447443332212, None, -1], dtype="Int64")})
    prepared = prepare_recipients(ints, text="hi")
    assert prepared.valid["phone"].tolist() == [UK]
    assert prepared.invalid["reason"].tolist() == ["empty", "negative number"]


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


def test_unknown_region():
    with pytest.raises(RecipientsError, match=r"'XX' is not a known region.*'GB'"):
        prepare_recipients([UK], text="hi", default_region="XX")
    assert prepare_recipients(["07443 332212"], text="hi", default_region="gb").valid[
        "phone"
    ].tolist() == [UK]


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


def test_same_phone_different_text_is_two_messages():
    rows = [
        {"phone": UK, "text": "a"},
        {"phone": "+44 7443 332212", "text": "b"},
        {"phone": "0044 7443 332212", "text": "a"},
        {"phone": "bad", "text": "a"},
        {"phone": "bad", "text": "a"},
    ]
    prepared = prepare_recipients(rows, text_column="text")
    assert prepared.valid[["phone", "text"]].values.tolist() == [[UK, "a"], [UK, "b"]]
    assert prepared.duplicates == 1
    assert len(prepared.invalid) == 2  # invalid rows are reported, never counted as duplicates
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates


def test_accounting_invariant_on_a_mess():
    values = [UK, UK, None, "x", US, "07443332212", US, 1.5, "+1 415 555 2671"]
    prepared = prepare_recipients(values, text="hi")
    assert isinstance(prepared, PreparedRecipients)
    assert prepared.total == len(values)
    assert prepared.total == len(prepared.valid) + len(prepared.invalid) + prepared.duplicates
    assert not prepared.valid.duplicated().any()


# --- one verdict per number -----------------------------------------------------------------

# (region, expected digits or None, reason when refused, ways to write the same number)
SAME_NUMBER = [
    (  # Ofcom's drama range: possible, though no operator uses it
        "GB",
        "447700900123",
        None,
        [
            "07700 900123",
            "+44 7700 900123",
            "0044 7700 900123",
            "7700900123",
            447700900123,
            447700900123.0,
            "447700900123.0",
        ],
    ),
    (  # too short for the UK: a local number without its area code
        "GB",
        None,
        "too short for +44 (GB): 8 digits after +44 is a local number without its area code",
        ["07443 3322", "+44 7443 3322", "0044 7443 3322", "4474433322", 4474433322, 4474433322.0],
    ),
    (  # a digit too many
        "GB",
        None,
        "too long for +44 (GB): 11 digits after +44 (at most 10)",
        ["+44 7443 3322123", "0044 7443 3322123", 4474433322123, 4474433322123.0],
    ),
    (
        "US",
        US,
        None,
        ["(415) 555-2671", "415.555.2671", "+1 415 555 2671", "001 415 555 2671", 14155552671],
    ),
    ("RU", "79123456789", None, ["8 (912) 345-67-89", "+7 912 345-67-89", 79123456789]),
    ("IT", "390612345678", None, ["06 1234 5678", "+39 06 1234 5678", "0039 06 1234 5678"]),
]


@pytest.mark.parametrize(("region", "expected", "reason", "spellings"), SAME_NUMBER)
def test_one_verdict_per_number(region, expected, reason, spellings):
    prepared = prepare_recipients(spellings, text="hi", default_region=region)
    if expected is None:
        assert prepared.valid.empty
        reasons = prepared.invalid["reason"].tolist()
        assert len(reasons) == len(spellings)
        assert all(reason in r for r in reasons), reasons  # bare digits: both readings told
    else:
        assert prepared.valid["phone"].tolist() == [expected]
        assert prepared.invalid.empty
        assert prepared.duplicates == len(spellings) - 1


def test_number_check_valid_also_wants_a_range_in_use():
    numbers = [
        "07700 900123",
        "+44 7700 900123",
        "+44 7443 332212",
        "07443 332212",
        "+44 7443 3322",
    ]
    loose = prepare_recipients(numbers, text="hi", default_region="GB")
    strict = prepare_recipients(numbers, text="hi", default_region="GB", number_check="valid")
    assert loose.valid["phone"].tolist() == ["447700900123", UK]
    assert strict.valid["phone"].tolist() == [UK]
    assert strict.invalid["reason"].tolist() == [
        "not a valid number for +44 (GB): in no number range in use",
        "not a valid number for +44 (GB): in no number range in use",
        "too short for +44 (GB): 8 digits after +44 is a local number without its area code",
    ]


def test_bare_digits_with_a_region_prefer_a_valid_reading():
    # 10 digits fit a UK national number, but only the international reading is a number in use.
    prepared = prepare_recipients(["3612345678", "4155552671"], text="hi", default_region="GB")
    assert prepared.valid["phone"].tolist() == ["3612345678"]  # Hungary, +36 1 234 5678
    assert prepared.invalid["reason"].tolist() == [
        "impossible for +44 (GB): no 10-digit number there begins with 415; as +4155552671: "
        "too short for +41 (CH): 8 digits after +41 (at least 9)"
    ]


@pytest.mark.parametrize("number_check", ["strict", "", None, "Valid"])
def test_unknown_number_check(number_check):
    with pytest.raises(ValueError, match=r"number_check must be one of 'possible', 'valid'"):
        prepare_recipients([UK], text="hi", number_check=number_check)


def test_a_list_holding_a_missing_value_is_shown_as_a_list():
    prepared = prepare_recipients([[np.nan]], text="hi")
    assert prepared.invalid[["original", "reason"]].values.tolist() == [
        ["[nan]", "not a phone number: list"]
    ]
