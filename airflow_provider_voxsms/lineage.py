"""OpenLineage for a campaign: the tables and files the two operators read and write.

A send reads its recipients (the tables of ``recipients_sql``, or the file or object-storage
dataset of ``recipients_path``) and its opt-outs (the tables of ``suppression_sql``), and
writes the results table (``results_conn_id``). A delivery report reads the results table the
send wrote and writes its status table (``report_conn_id``). The send ledger is bookkeeping,
not data, and stays out. A run facet, ``voxsmsSummary``, carries the counts the task returned.

Tables are named by common-sql and OpenLineage's own code (the connection's hook gives the
namespace, ``SQLParser`` the names, through ``get_openlineage_facets_with_sql``), so a table
is the same dataset here as in ``SQLExecuteQueryOperator`` on the same connection. A hook
without OpenLineage support (SQLite's) gives no table datasets, as it gives none there.

OpenLineage is imported only inside these functions (the ``[openlineage]`` extra): without
it they return None. They run in OpenLineage's listener after the task, and never fail it: a
source that cannot be named is left out and logged at debug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_voxsms.storage.results import is_location, outcomes_table
from airflow_provider_voxsms.storage.sql import db_api_hook

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

log = logging.getLogger(__name__)

SUMMARY_FACET = "voxsmsSummary"  # the run facet's key in the event's run.facets


def send_lineage(operator: Any) -> OperatorLineage | None:
    """Inputs, outputs and counts of an :class:`A2PSendSmsOperator`'s run (after ``execute``:
    its rendered parameters and, once it has them, the counts it returned)."""
    sources: list[Callable[[], list[Dataset]]] = []
    if operator.recipients_sql and operator.recipients_conn_id:
        sources.append(lambda: _query_tables(operator.recipients_conn_id, operator.recipients_sql))
    elif operator.recipients_path:
        sources.append(lambda: [file_dataset(operator.recipients_path)])
    if operator.suppression_sql and operator.suppression_conn_id:
        sources.append(
            lambda: _query_tables(operator.suppression_conn_id, operator.suppression_sql)
        )
    targets = []
    if operator.results_conn_id:
        prefix = operator.results_table_prefix
        targets.append(lambda: _tables(operator.results_conn_id, [outcomes_table(prefix)]))
    return _lineage(operator, sources, targets)


def report_lineage(operator: Any) -> OperatorLineage | None:
    """Inputs, outputs and counts of an :class:`A2PSmsDeliveryReportOperator`'s run: the
    results tables it read its messages from, the status table it wrote."""
    read = sorted(getattr(operator, "_results_read", ()))
    sources = [lambda c=conn_id, t=table: _tables(c, [t]) for conn_id, table in read]
    targets = []
    if operator.report_conn_id:
        targets.append(lambda: _tables(operator.report_conn_id, [operator.report_table]))
    return _lineage(operator, sources, targets)


def results_read(messages: Any) -> set[tuple[str, str]]:
    """``(conn_id, table)`` of every results location in what a report followed (a send's
    summary or ``accepted_numbers`` XCom, or a list of them); none for rows given in XCom."""
    items = [messages] if is_location(messages) else messages
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        return set()  # rows (a DataFrame), or nothing
    wheres = [item.get("results", item) for item in items if is_location(item)]
    return {(where["conn_id"], where["table"]) for where in wheres}


def file_dataset(path: str) -> Dataset:
    """The OpenLineage dataset of a file or directory, local (``file`` and its absolute path)
    or an object-storage URL (``s3://bucket`` and the key, a connection id in it dropped)."""
    from openlineage.client.event_v2 import Dataset

    if "://" not in path:
        return Dataset(namespace="file", name=str(Path(path).expanduser().resolve()))
    url = urlsplit(path)
    bucket = url.netloc.rpartition("@")[2]  # s3://conn_id@bucket/key names a connection
    if url.scheme == "file":
        return Dataset(namespace=f"file://{bucket}" if bucket else "file", name=url.path)
    return Dataset(namespace=f"{url.scheme}://{bucket}", name=url.path.lstrip("/") or "/")


def _lineage(operator: Any, sources, targets) -> OperatorLineage | None:
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        log.debug("OpenLineage is not installed: no lineage for %s", operator.task_id)
        return None
    try:
        return OperatorLineage(
            inputs=list(_each(sources, operator.task_id)),
            outputs=list(_each(targets, operator.task_id)),
            run_facets=_summary_facet(getattr(operator, "_summary", None)),
        )
    except Exception:
        log.debug("OpenLineage: no lineage for %s", operator.task_id, exc_info=True)
        return None


def _each(makers, task_id: str) -> Iterator[Dataset]:
    """The datasets of every source that can be named; the others logged at debug."""
    for make in makers:
        try:
            yield from make()
        except Exception:
            log.debug("OpenLineage: a dataset of %s left out", task_id, exc_info=True)


def _query_tables(conn_id: str, sql: str) -> list[Dataset]:
    """The tables ``sql`` reads, named as common-sql's operator names them on ``conn_id``."""
    from airflow.providers.openlineage.sqlparser import get_openlineage_facets_with_sql

    hook = db_api_hook(conn_id)
    found = get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=conn_id, database=None)
    return list(found.inputs) if found else []


def _tables(conn_id: str, tables: list[str]) -> list[Dataset]:
    """Tables by name (plain identifiers: ours), named as a query on them would name them."""
    return [d for table in tables for d in _query_tables(conn_id, f"SELECT * FROM {table}")]


def _summary_facet(summary: dict | None) -> dict:
    """``{"voxsmsSummary": facet}`` with the summary's counts (numbers and flags), or {}."""
    if not summary:
        return {}
    from openlineage.client.facet_v2 import RunFacet

    counts = {
        key: value
        for key, value in summary.items()
        if isinstance(value, int | float | bool) and not key.startswith("_")
    }
    return {SUMMARY_FACET: RunFacet().with_additional_properties(**counts)}
