"""Phone numbers: normalisation with reasons, number types and time zones.

``plan`` is the numbering-plan engine, the only module reading phonenumbers' metadata;
``digits`` turns written values into digits; ``normalise`` reads them as national or
international numbers and checks them a calling code at a time, in the order and words of
``verdict``; ``resolve`` takes the few numbers only ``phonenumbers.parse`` can settle; ``zones``
gives the time zones of numbers.
"""

from __future__ import annotations

from airflow_provider_voxsms.sms.numbers.normalise import (
    NUMBER_CHECKS,
    check_mode,
    check_region,
    normalise_phones,
)
from airflow_provider_voxsms.sms.numbers.plan import number_types
from airflow_provider_voxsms.sms.numbers.zones import UNKNOWN_ZONE, zones_of

__all__ = [
    "NUMBER_CHECKS",
    "UNKNOWN_ZONE",
    "check_mode",
    "check_region",
    "normalise_phones",
    "number_types",
    "zones_of",
]
