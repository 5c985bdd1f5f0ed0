"""Phone normalisation through ``prepare_recipients``: the table of written forms, one verdict
per number however it is written, ``number_check`` and ``default_region``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_voxsms.sms.recipients import RecipientsError, prepare_recipients
from airflow_provider_voxsms.sms.values import NULL_MARKERS

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
        if shown.strip().lower() in NULL_MARKERS:  # "None", "   ": missing, shown empty
            shown = ""
        assert row["original"] == shown.encode("utf-8", "backslashreplace").decode()


def test_numeric_columns_from_csv():
    frame = pd.DataFrame({"phone": [447443332212.0, np.nan, 14155552671.0, 0.5]})
    prepared = prepare_recipients(frame, text="hi")
    assert prepared.valid["phone"].tolist() == [UK, US]
    assert prepared.invalid["original"].tolist() == ["", "0.5"]
    ints = pd.DataFrame({"phone": pd.array([447443332212, None, -1], dtype="Int64")})
    prepared = prepare_recipients(ints, text="hi")
    assert prepared.valid["phone"].tolist() == [UK]
    assert prepared.invalid["reason"].tolist() == ["empty", "negative number"]


def test_unknown_region():
    with pytest.raises(RecipientsError, match=r"'XX' is not a known region.*'GB'"):
        prepare_recipients([UK], text="hi", default_region="XX")
    assert prepare_recipients(["07443 332212"], text="hi", default_region="gb").valid[
        "phone"
    ].tolist() == [UK]


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
