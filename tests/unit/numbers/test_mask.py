"""mask: numbers as log lines show them (country code and last two digits), and ``"full"``."""

from __future__ import annotations

import pytest

from airflow_provider_voxsms.sms.numbers.mask import check_log_numbers, mask_number, shown_number


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+44 7443 332212", "+44 ******** 12"),
        ("+447443332212", "+44 ******** 12"),
        ("0044 7443 332212", "+44 ******** 12"),
        ("+1 (617) 885-7570", "+1 ******** 70"),
        ("+1 617885757", "+1 ******* 57"),  # too short for +1, masked all the same
        ("+380 44 123 4567", "+380 ******* 67"),
    ],
)
def test_an_international_number_keeps_its_country_code_and_last_two_digits(value, masked):
    assert mask_number(value) == masked


def test_a_normalised_number_is_read_as_e164_without_its_plus():
    assert mask_number("447443332212", e164=True) == "+44 ******** 12"
    assert mask_number("12015550123", e164=True) == "+1 ******** 23"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("07443 332212", "**********12"),  # national: no country code to show
        ("447443332212", "**********12"),  # bare digits are not taken for E.164 unless said
        ("not a number", "**********er"),
        ("+999 1234567", "**********67"),  # no calling code +999
        ("+44 12", "****12"),  # too short for a country code and a number
        ("+441", "****"),  # four characters or fewer: nothing kept
        ("1234", "****"),
        ("", ""),
        (None, ""),
        (4.47443332212e11, "************.0"),  # as str() writes it
    ],
)
def test_a_value_without_a_country_code_keeps_only_its_last_two_characters(value, masked):
    assert mask_number(value) == masked


def test_full_shows_the_value_as_written_and_masked_is_the_default():
    assert shown_number("+44 7443 332212", "full") == "+44 7443 332212"
    assert shown_number("+44 7443 332212") == "+44 ******** 12"
    assert shown_number("447443332212", "masked", e164=True) == "+44 ******** 12"


def test_only_the_two_modes_are_accepted():
    assert check_log_numbers("full") == "full"
    with pytest.raises(ValueError, match="log_numbers is one of"):
        check_log_numbers("partial")
