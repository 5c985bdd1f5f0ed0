"""Every table the provider reads or writes, on any common-sql connection.

``key`` says whose rows they are (a campaign, a task instance); ``schema`` holds every table's
DDL; ``writer`` commits in groups from a thread; ``ledger`` (with ``earlier`` and ``codec``)
makes retries safe, and ``caps`` caps the messages a number gets across its campaigns;
``results`` holds one row per recipient; ``failed_numbers`` and ``delivery_status`` are the
tables users' DAGs write; ``source`` reads recipients from a query or files; ``sql`` is the
little SQL they share.
"""

from __future__ import annotations

from airflow_provider_voxsms.storage.delivery_status import log_delivery_status
from airflow_provider_voxsms.storage.failed_numbers import log_failed_numbers

__all__ = ["log_delivery_status", "log_failed_numbers"]
