"""Property tests: one verdict per number, phonenumbers' own, however the number is written."""

from __future__ import annotations

import re

import pandas as pd
import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_voxsms.sms.numbers import normalise_phones

PLAN = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
CHECKS = st.sampled_from(["possible", "valid"])
TYPES = ("mobile", "fixed_line", "toll_free", "premium_rate", "voip", "personal_number", "uan")


def _meta(code: int, region: str):
    return phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)


@st.composite
def numbers(draw) -> tuple[str, str]:
    """Digits-only E.164 around a real number plan (a region's example numbers, possibly with
    digits changed, one dropped or added; or random digits of a length near the possible ones),
    sometimes with the national prefix after the country code; and a region of that code."""
    code = draw(st.sampled_from(sorted(PLAN)))
    region = draw(st.sampled_from(PLAN[code]))
    meta = _meta(code, region)
    examples = [
        desc.example_number
        for desc in (getattr(meta, name) for name in TYPES)
        if desc is not None and desc.example_number
    ]
    if examples and draw(st.booleans()):
        nsn = draw(st.sampled_from(examples))
        change = draw(st.sampled_from(["keep", "tail", "drop", "add"]))
        if change == "tail":
            k = draw(st.integers(1, min(4, len(nsn))))
            nsn = nsn[:-k] + draw(st.text("0123456789", min_size=k, max_size=k))
        elif change == "drop":
            nsn = nsn[:-1]
        elif change == "add":
            nsn += draw(st.sampled_from("0123456789"))
    else:
        lengths = meta.general_desc.possible_length + meta.general_desc.possible_length_local_only
        near = {n + d for n in lengths for d in (-1, 0, 1) if n + d > 0}
        n = draw(st.sampled_from(sorted(near)))
        nsn = draw(st.text("0123456789", min_size=n, max_size=n))
    if meta.national_prefix and draw(st.integers(0, 9)) == 0:
        nsn = meta.national_prefix + nsn  # "+44 0 7443 332212": phonenumbers strips the 0
    return f"{code}{nsn}", region


def reference(text: str, region: str | None, check: str) -> str | None:
    """What phonenumbers says ``text`` is (digits-only E.164), or None when we must refuse it:
    not possible (too short, too long, local-only), not of the general shape of any region of
    its code, outside what the API routes (8-15 digits), or, with "valid", not is_valid."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    code = number.country_code
    nsn = phonenumbers.national_significant_number(number)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    metas = [m for m in (_meta(code, r) for r in PLAN[code]) if m is not None]
    if not any(re.fullmatch(m.general_desc.national_number_pattern, nsn) for m in metas):
        return None
    if not 8 <= len(f"{code}{nsn}") <= 15:
        return None
    if check == "valid" and not phonenumbers.is_valid_number(number):
        return None
    return f"{code}{nsn}"


def verdicts(values: list, region: str | None, check: str) -> list[tuple[str | None, str | None]]:
    phones, reasons = normalise_phones(pd.Series(values, dtype=object), region, number_check=check)
    out = [(None if pd.isna(p) else p, r) for p, r in zip(phones, reasons, strict=True)]
    for phone, reason in out:
        assert (phone is None) == (reason is not None), (phone, reason)
    return out


def spellings(digits: str) -> list:
    code = next(digits[:n] for n in (1, 2, 3) if int(digits[:n]) in PLAN)
    spaced = f"+{code} {digits[len(code) :]}"
    exact = [float(digits)] if int(digits) < 2**53 else []  # a CSV column of floats
    return ["+" + digits, "00" + digits, spaced, digits, int(digits), *exact]


AGREE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREE
@given(drawn=st.lists(numbers(), min_size=1, max_size=20), check=CHECKS)
def test_international_formats_agree_with_phonenumbers(drawn, check):
    """+, 00, spaced, bare digits, int and float: one verdict, phonenumbers' verdict."""
    digits = [d for d, _ in drawn]
    values = [v for d in digits for v in spellings(d)]
    got = verdicts(values, None, check)
    start = 0
    for d in digits:
        expected = reference("+" + d, None, check)
        row, start = got[start : start + len(spellings(d))], start + len(spellings(d))
        assert [phone for phone, _ in row] == [expected] * len(row), (d, row)
        assert len({reason for _, reason in row}) == 1, (d, row)  # one reason, whatever the format


@AGREE
@given(drawn=numbers().filter(lambda d: d[1] in phonenumbers.SUPPORTED_REGIONS), check=CHECKS)
def test_national_format_agrees_with_phonenumbers(drawn, check):
    """A number written as phonenumbers formats it nationally, read with that region, gets what
    phonenumbers parses it to; and the verdict of its international form when that is the same
    number. "+" and "00" forms are read alike with a default_region."""
    digits, region = drawn
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:  # over 17 national digits: no national format
        number = None
        text = digits[
            len(str(phonenumbers.PhoneMetadata.metadata_for_region(region).country_code)) :
        ]
    else:
        text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    national, plus, zeros = verdicts([text, "+" + digits, "00" + digits], region, check)
    intl = reference("+" + digits, None, check)
    assert plus[0] == zeros[0] == intl
    bare = re.sub("[^0-9]", "", text)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    main = _meta(meta.country_code, PLAN[meta.country_code][0])
    prefix = meta.national_prefix
    nationally = not bare.startswith("00") and (  # "00...": international, whatever the region
        bare.startswith("0")
        or len(bare) <= max(meta.general_desc.possible_length + main.general_desc.possible_length)
        or (prefix and bare.startswith(prefix) and not bare.startswith(str(meta.country_code)))
    )
    if not nationally:
        expected = reference("+" + bare.removeprefix("00"), None, check)
    elif bare.startswith("0"):
        expected = reference(text, region, check)
    else:  # bare digits may be an international number without "+": a valid reading wins
        modes = dict.fromkeys(("valid", check))
        readings = [
            reference(t, r, m) for m in modes for t, r in ((text, region), ("+" + bare, None))
        ]
        expected = next((r for r in readings if r is not None), None)
    assert national[0] == expected, (text, region, national)
    if nationally and _same_number(text, region, number):
        # The same number as phonenumbers reads it: the same verdict, unless the digits were
        # taken as a number written without its "+" because the national reading failed.
        assert national[0] in (plus[0], reference("+" + bare, None, check)), (text, national, plus)


def _same_number(text: str, region: str, number) -> bool:
    try:
        return phonenumbers.parse(text, region) == number
    except phonenumbers.NumberParseException:
        return False
