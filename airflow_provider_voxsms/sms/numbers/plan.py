"""The numbering plan: phonenumbers' metadata applied to whole columns, a calling code at a time.

This is the only module that reads phonenumbers' metadata (``PhoneMetadata``, the table of
calling codes and regions); the rest of ``sms/`` asks it questions about columns of digits.
What it answers for one number it must answer for the column: the property tests compare the
two on random numbers. Its functions mirror phonenumbers' own (``_is_number_matching_desc``,
``_number_type_helper``, ``region_code_for_number``), and leave to phonenumbers itself the rows
it would read differently (a national prefix after the country code, "+44 0 7443 332212").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import phonenumbers

__all__ = [
    "Plan",
    "RegionPlan",
    "calling_codes",
    "fits_general",
    "in_use",
    "known_region",
    "number_types",
    "plan_of",
    "region_plan",
    "starts_with_national_prefix",
]

_KIND = phonenumbers.PhoneNumberType
_TYPE_ORDER = (  # _number_type_helper's order before the fixed-line and mobile checks
    ("premium_rate", _KIND.PREMIUM_RATE),
    ("toll_free", _KIND.TOLL_FREE),
    ("shared_cost", _KIND.SHARED_COST),
    ("voip", _KIND.VOIP),
    ("personal_number", _KIND.PERSONAL_NUMBER),
    ("pager", _KIND.PAGER),
    ("uan", _KIND.UAN),
    ("voicemail", _KIND.VOICEMAIL),
)


@dataclass(frozen=True)
class Plan:
    """What the numbering plan says about one country calling code."""

    code: int
    label: str  # "+44 (GB)": the code and its main region, whose lengths phonenumbers uses
    lengths: tuple[int, ...]  # possible lengths of a national (significant) number
    status: np.ndarray  # phonenumbers' ValidationResult by national-number length
    general: tuple[re.Pattern, ...]  # general national-number pattern of each region, main first
    regions: tuple[str, ...]
    prefix: re.Pattern | None  # national prefix for parsing of the main region

    def length_status(self, n):
        """phonenumbers' ``ValidationResult`` for national numbers of ``n`` digits (an int or
        an array of them): whether that length is possible with this code."""
        return self.status[np.minimum(n, len(self.status) - 1)]

    def fits(self, nsn: str) -> bool:
        """Whether one national number has the general shape of one of the code's regions."""
        return any(p.fullmatch(nsn) for p in self.general)


@dataclass(frozen=True)
class RegionPlan:
    """What reading a number written nationally in one region needs to know."""

    code: int  # the region's calling code
    national_prefix: str | None  # "0" for GB, "8" for RU, None where there is none
    longest: int  # digits of the longest national number of the region or its calling code


@cache
def plan_of(code: int) -> Plan:
    """The plan of an assigned calling code, built once: a table per length, not a call per row."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    main = regions[0]
    meta = _metadata(code, main)
    metas = [m for m in (_metadata(code, r) for r in regions) if m is not None]
    patterns = dict.fromkeys(m.general_desc.national_number_pattern for m in metas)
    where = "non-geographic" if main == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY else main
    prefix = meta.national_prefix_for_parsing
    return Plan(
        code=code,
        label=f"+{code} ({where})",
        lengths=tuple(meta.general_desc.possible_length),
        status=_length_statuses(code),
        general=tuple(re.compile(p) for p in patterns if p),
        regions=regions,
        prefix=re.compile(prefix) if prefix else None,
    )


def _length_statuses(code: int) -> np.ndarray:
    """``is_possible_number_with_reason`` for every national-number length after ``code``."""
    result = phonenumbers.ValidationResult
    return np.array(  # phonenumbers parses national numbers of 2 to 17 digits
        [result.TOO_SHORT] * 2
        + [
            phonenumbers.is_possible_number_with_reason(
                phonenumbers.PhoneNumber(country_code=code, national_number=int("5" * n))
            )
            for n in range(2, 18)
        ]
        + [result.TOO_LONG],
        dtype=np.int8,
    )


@cache
def region_plan(region: str) -> RegionPlan:
    """The calling code, national prefix and longest national number of a known region."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    longest = max(*meta.general_desc.possible_length, *plan_of(meta.country_code).lengths)
    return RegionPlan(meta.country_code, meta.national_prefix, longest)


def known_region(region: str) -> bool:
    """Whether phonenumbers has a numbering plan for this (upper-case) region code."""
    return region in phonenumbers.SUPPORTED_REGIONS


def _metadata(code: int, region: str):
    return phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)


def _head_codes() -> dict[str, int]:
    """Country calling code of every head of up to 3 digits ("447" -> 44, "4" -> 0 for none), as
    phonenumbers reads it: the shortest known code wins (codes are prefix-free anyway)."""
    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    out = {}
    for width in (1, 2, 3):
        for i in range(10**width):
            head = f"{i:0{width}d}"
            codes = [int(head[:n]) for n in range(1, width + 1) if head[0] != "0"]
            out[head] = next((c for c in codes if c in known), 0)
    return out


_CODE_OF_HEAD = _head_codes()


def calling_codes(digits: pd.Series) -> np.ndarray:
    """The calling code (int64, 0 for none assigned) each digits-only E.164 number starts with,
    looked up once per distinct 3-digit head."""
    heads, distinct = pd.factorize(digits.str.slice(0, 3))
    return np.array([_CODE_OF_HEAD.get(h, 0) for h in distinct] + [0], dtype=np.int64)[heads]


def starts_with_national_prefix(nsn: pd.Series, plan: Plan) -> np.ndarray:
    """Rows whose national number starts with what phonenumbers may strip as a national prefix
    (or carrier code) even after a country code: they are read by phonenumbers itself."""
    if plan.prefix is None:
        return np.zeros(len(nsn), dtype=bool)
    hit = nsn.str.match(f"(?:{plan.prefix.pattern})").to_numpy(bool, copy=True)
    rows = np.flatnonzero(hit)
    if len(rows):  # the pattern may match nothing at all ("0?(...)?" for +54): that is no prefix
        hit[rows] = [_takes_something(plan.prefix.match(v)) for v in nsn.iloc[rows]]
    return hit


def _takes_something(match: re.Match | None) -> bool:
    return match is not None and (match.end() > 0 or any(g is not None for g in match.groups()))


def fits_general(nsn: pd.Series, plan: Plan) -> np.ndarray:
    """Rows that fit the general national-number pattern of one of the code's regions."""
    out = np.zeros(len(nsn), dtype=bool)
    todo = np.arange(len(nsn))
    for pattern in plan.general:
        if not len(todo):
            break
        hit = _fullmatch(nsn.iloc[todo], pattern.pattern)
        out[todo[hit]] = True
        todo = todo[~hit]
    return out


def _fullmatch(s: pd.Series, pattern: str) -> np.ndarray:
    return s.str.fullmatch(f"(?:{pattern})").to_numpy(bool)


def in_use(nsn: pd.Series, plan: Plan) -> np.ndarray:
    """Rows in a number range in use (``is_valid_number``: the number has a known type)."""
    return _types(nsn, plan) != _KIND.UNKNOWN


def number_types(numbers: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``phonenumbers.number_type`` of digits-only E.164 numbers, a country at a time: the
    calling code of each (0 for none) and its ``PhoneNumberType``. Numbers phonenumbers would
    read differently (a national prefix after the code) go through phonenumbers itself."""
    digits = pd.Series(numbers.astype(object).to_numpy(), dtype=object).astype(str)
    codes = calling_codes(digits)
    kinds = np.full(len(digits), _KIND.UNKNOWN, dtype=np.int64)
    for code in np.unique(codes[codes > 0]).tolist():
        rows = np.flatnonzero(codes == code)
        nsn = digits.iloc[rows].str.slice(len(str(code)))
        plan = plan_of(code)
        slow = starts_with_national_prefix(nsn, plan)
        kinds[rows[~slow]] = _types(nsn[~slow], plan)
        kinds[rows[slow]] = [
            phonenumbers.number_type(phonenumbers.parse("+" + n)) for n in digits.iloc[rows[slow]]
        ]
    return codes, kinds


def _types(nsn: pd.Series, plan: Plan) -> np.ndarray:
    """``number_type`` for a column of one calling code, with the region picked as
    ``region_code_for_number`` does (leading digits, else the first region the number fits)."""
    if len(plan.regions) == 1:
        meta = _metadata(plan.code, plan.regions[0])
        return _type_helper(nsn, meta) if meta else np.full(len(nsn), _KIND.UNKNOWN)
    out = np.full(len(nsn), _KIND.UNKNOWN, dtype=np.int64)
    todo = np.arange(len(nsn))
    for region in plan.regions:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None or not len(todo):
            continue
        if meta.leading_digits is not None:
            mine = nsn.iloc[todo].str.match(f"(?:{meta.leading_digits})").to_numpy(bool)
            out[todo[mine]] = _type_helper(nsn.iloc[todo[mine]], meta)
        else:
            kinds = _type_helper(nsn.iloc[todo], meta)
            mine = kinds != _KIND.UNKNOWN
            out[todo[mine]] = kinds[mine]
        todo = todo[~mine]
    return out


def _type_helper(nsn: pd.Series, meta) -> np.ndarray:
    """phonenumbers' ``_number_type_helper`` for a column."""
    size = nsn.str.len().to_numpy(np.int64)
    out = np.full(len(nsn), _KIND.UNKNOWN, dtype=np.int64)
    todo = np.flatnonzero(_fits_desc(nsn, size, meta.general_desc))
    for name, kind in _TYPE_ORDER:
        if not len(todo):
            return out
        hit = _fits_desc(nsn.iloc[todo], size[todo], getattr(meta, name))
        out[todo[hit]] = kind
        todo = todo[~hit]
    fixed = _fits_desc(nsn.iloc[todo], size[todo], meta.fixed_line)
    if meta.same_mobile_and_fixed_line_pattern:
        out[todo[fixed]] = _KIND.FIXED_LINE_OR_MOBILE
        return out
    mobile = _fits_desc(nsn.iloc[todo], size[todo], meta.mobile)
    out[todo[fixed & mobile]] = _KIND.FIXED_LINE_OR_MOBILE
    out[todo[fixed & ~mobile]] = _KIND.FIXED_LINE
    out[todo[~fixed & mobile]] = _KIND.MOBILE
    return out


def _fits_desc(nsn: pd.Series, size: np.ndarray, desc) -> np.ndarray:
    """phonenumbers' ``_is_number_matching_desc`` for a column."""
    if desc is None or not desc.national_number_pattern:
        return np.zeros(len(nsn), dtype=bool)
    out = np.isin(size, desc.possible_length) if desc.possible_length else np.ones(len(nsn), bool)
    rows = np.flatnonzero(out)
    if len(rows):
        out[rows] = _fullmatch(nsn.iloc[rows], desc.national_number_pattern)
    return out
