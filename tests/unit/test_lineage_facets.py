"""OpenLineage facets of the two operators without a DAG run: OpenLineage is imported lazily,
lineage never raises, and the datasets are named by the rules in ``lineage.py`` (the naming of
tables against common-sql's own operator is checked in tests/dags/test_lineage.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import UserList

import pandas as pd
import pytest

from airflow_provider_voxsms import lineage
from airflow_provider_voxsms.operators.a2p_sms import A2PSendSmsOperator
from airflow_provider_voxsms.operators.delivery_report import A2PSmsDeliveryReportOperator


def send(**kwargs) -> A2PSendSmsOperator:
    return A2PSendSmsOperator(task_id="send", src_number="VoxDemo", text="Hi", **kwargs)


def datasets(items) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in items]


def test_the_operators_import_no_openlineage_and_work_without_it():
    """Importing the operators loads no OpenLineage code, and with OpenLineage absent (its
    modules blocked) the facets methods return None instead of failing."""
    probe = (
        "import sys\n"
        "import airflow_provider_voxsms.operators.a2p_sms as s\n"
        "import airflow_provider_voxsms.operators.delivery_report as d\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'openlineage'\n"
        "                or m.startswith(('airflow.providers.openlineage.extractors',\n"
        "                                 'airflow.providers.openlineage.sqlparser')))\n"
        "print(loaded)\n"
        "for name in ('openlineage', 'airflow.providers.openlineage.extractors',\n"
        "             'airflow.providers.openlineage.sqlparser'):\n"
        "    sys.modules[name] = None  # import fails, as when the package is not installed\n"
        "op = s.A2PSendSmsOperator(task_id='t', src_number='S', text='Hi',\n"
        "    recipients_path='/tmp/r.csv')\n"
        "op._summary = {'recipients': 1}\n"
        "report = d.A2PSmsDeliveryReportOperator(task_id='r', messages=[1])\n"
        "print(op.get_openlineage_facets_on_complete(None),\n"
        "      op.get_openlineage_facets_on_failure(None),\n"
        "      report.get_openlineage_facets_on_complete(None))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "None None None"], done.stdout


def test_a_source_that_cannot_be_named_is_left_out_and_logged_at_debug(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_DB", raising=False)
    op = send(
        recipients_path="/data/recipients.csv",
        suppression_sql="SELECT phone FROM opt_outs",
        suppression_conn_id="no_such_db",
    )
    with caplog.at_level(logging.DEBUG, logger=lineage.__name__):
        facets = op.get_openlineage_facets_on_complete(None)
    assert datasets(facets.inputs) == [("file", "/data/recipients.csv")]
    assert facets.outputs == [] and facets.run_facets == {}  # execute never ran: no counts
    left_out = [r for r in caplog.records if r.name == lineage.__name__]
    assert left_out and all(r.levelno == logging.DEBUG for r in left_out)
    assert "no_such_db" in left_out[0].exc_text


def test_a_results_table_that_cannot_be_named_is_left_out(caplog):
    op = send(recipients_path="/data/r.csv", results_conn_id="db")
    op.results_table_prefix = "no; DROP TABLE"  # as if set after the checks in __init__
    with caplog.at_level(logging.DEBUG, logger=lineage.__name__):
        facets = op.get_openlineage_facets_on_complete(None)
    assert datasets(facets.inputs) == [("file", "/data/r.csv")] and facets.outputs == []
    assert [r.levelno for r in caplog.records if r.name == lineage.__name__] == [logging.DEBUG]


def test_any_error_building_the_facets_gives_none_logged_at_debug(monkeypatch, caplog):
    def broken(summary):
        raise RuntimeError("boom")

    monkeypatch.setattr(lineage, "_summary_facet", broken)
    op = send(recipients=["+447700900123"])
    with caplog.at_level(logging.DEBUG, logger=lineage.__name__):
        assert op.get_openlineage_facets_on_failure(None) is None
    assert [r.levelno for r in caplog.records if r.name == lineage.__name__] == [logging.DEBUG]


def test_the_run_facet_carries_the_returned_counts_only():
    op = send(recipients=["+447700900123"])
    op._summary = {
        "recipients": 3,
        "accepted": 2,
        "duration_s": 1.5,
        "dry_run": False,
        "results": {"conn_id": "db", "table": "voxsms_results_outcomes"},
        "stopped_by": "insufficient funds",
        "variants": {"A": {"recipients": 1}},
    }
    facets = op.get_openlineage_facets_on_complete(None)
    assert facets.inputs == [] and facets.outputs == []  # recipients from XCom: no dataset
    facet = facets.run_facets[lineage.SUMMARY_FACET]
    assert (facet.recipients, facet.accepted, facet.duration_s, facet.dry_run) == (3, 2, 1.5, False)
    assert not hasattr(facet, "results") and not hasattr(facet, "stopped_by")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/r.csv", ("file", "/data/r.csv")),
        ("file:///data/shards/", ("file", "/data/shards/")),
        ("s3://campaigns/2026/r.parquet", ("s3://campaigns", "2026/r.parquet")),
        ("s3://aws_prod@campaigns/2026/", ("s3://campaigns", "2026/")),
        ("gs://bucket", ("gs://bucket", "/")),
    ],
)
def test_a_recipients_path_is_a_file_or_object_storage_dataset(path, expected):
    dataset = lineage.file_dataset(path)
    assert (dataset.namespace, dataset.name) == expected


def test_a_relative_recipients_path_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lineage.file_dataset("r.csv").name == str(tmp_path / "r.csv")


def test_sqlite_tables_are_left_out_as_common_sql_leaves_them_out(tmp_path, monkeypatch):
    """SQLite's hook gives OpenLineage no database information: common-sql's operator reports
    no tables there, and neither do ours (nor do they fail)."""
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    monkeypatch.setenv("AIRFLOW_CONN_LITE", f"sqlite://{tmp_path / 'lite.db'}")
    query = "SELECT phone FROM recipients"
    reference = SQLExecuteQueryOperator(task_id="q", conn_id="lite", sql=query)
    assert not (reference.get_openlineage_facets_on_start() or lineage_none()).inputs
    op = send(recipients_sql=query, recipients_conn_id="lite", results_conn_id="lite")
    facets = op.get_openlineage_facets_on_complete(None)
    assert facets.inputs == [] and facets.outputs == []


def lineage_none():
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage()


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            {"results": {"conn_id": "db", "table": "t_outcomes"}, "accepted": 3},
            {("db", "t_outcomes")},
        ),
        (
            {"conn_id": "db", "table": "t_outcomes", "outcomes": ["accepted"]},
            {("db", "t_outcomes")},
        ),
        (
            [
                {"conn_id": "a", "table": "x"},
                {"conn_id": "b", "table": "x"},
                {"conn_id": "a", "table": "x"},
            ],
            {("a", "x"), ("b", "x")},
        ),
        (UserList([{"conn_id": "a", "table": "x"}]), {("a", "x")}),  # as a LazyXComSequence
        (pd.DataFrame({"message_id": [1]}), set()),
        ([1, 2], set()),
        (None, set()),
    ],
)
def test_a_report_reads_the_results_tables_its_messages_point_to(messages, expected):
    assert lineage.results_read(messages) == expected


def test_a_report_without_a_table_or_a_results_location_has_no_datasets():
    report = A2PSmsDeliveryReportOperator(task_id="r", messages=[1, 2])
    report._results_read = ()
    report._summary = {"messages": 2, "delivered": 2}
    facets = report.get_openlineage_facets_on_complete(None)
    assert facets.inputs == [] and facets.outputs == []
    assert facets.run_facets[lineage.SUMMARY_FACET].delivered == 2
