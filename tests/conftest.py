"""Test-wide setup: an isolated AIRFLOW_HOME with a SQLite metadata database, made before Airflow loads."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dag_runs import run_dag_once
from hypothesis import settings

# CI explores the same examples every run, so a landing never hinges on a lucky draw; local
# runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent

# tests/ is on sys.path (no __init__.py): the throwaway PostgreSQL server fixture `postgres_uri`.
pytest_plugins = ["pg_server"]

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="voxsms-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_AIRFLOW_HOME / "logs")
os.environ.pop("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create Airflow's metadata database once per test session; yields AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session", autouse=True)
def _one_execution_api_app_per_process():
    """On Airflow 3.2, build ``dag.test()``'s in-process Execution API app once per process.

    Airflow 3.2's ``dag.test()`` builds a new app for every task instance it runs, and Cadwyn
    builds the app's versioned routes on its first request: about 5 s of CPU per task instance
    here (84 s of the sharded example DAG's 94 s test on 3.2.2, against 7 s on 3.3.2). The app
    holds no state of a task's (a database-backed dag bag, auth overrides), so every task may use
    one, as Airflow 3.3 does itself (its ``supervisor.in_process_api_server`` is cached).
    """
    from airflow import __version__ as airflow_version

    if tuple(int(part) for part in airflow_version.split(".")[:2]) >= (3, 3):
        yield
        return
    from airflow.api_fastapi.execution_api import app as execution_api

    patch = pytest.MonkeyPatch()
    shared = functools.cache(execution_api.create_task_execution_api_app)
    patch.setattr(execution_api, "create_task_execution_api_app", shared)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def credentials_json() -> str:
    """A fresh service-account credentials.json (2048-bit RSA key) in Voximplant's format."""
    from airflow_provider_voxsms.emulator.credentials import Credentials

    return Credentials.generate(account_id=4242, account_email="sa@example.test").to_json()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def voxsms_db(request, monkeypatch, tmp_path) -> str:
    """Connection ``voxsms_db`` on a new SQLite file, or on the session's PostgreSQL server
    with the provider's tables dropped first. Returns the connection id."""
    if request.param == "sqlite":
        monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", f"sqlite://{tmp_path / 'voxsms.db'}")
    else:
        from airflow_provider_voxsms.storage.sql import db_api_hook

        monkeypatch.setenv("AIRFLOW_CONN_VOXSMS_DB", request.getfixturevalue("postgres_uri"))
        for table in (
            "sms_failed_numbers",
            "sms_delivery_status",
            "voxsms_results_outcomes",
            "voxsms_campaign_summary",
            *(
                f"voxsms_send_ledger{s}"
                for s in ("_leases", "_claims", "_outcomes", "_contacts", "_cap_lock")
            ),
        ):
            db_api_hook("voxsms_db").run(f"DROP TABLE IF EXISTS {table}")
    return "voxsms_db"


@pytest.fixture
def run_dag(airflow_db):
    """``run_dag_once`` for tests, with the metadata DB ready."""
    return run_dag_once


# -- a failure's innermost causes, at the very end of the output ------------------------------
# CI shows the head and the tail of a run. A Hypothesis FlakyFailure or an exception group
# prints its sub-exceptions in the middle, after a long falsifying example; this repeats the
# innermost errors, shortened, after the summary.

_ROOT_CAUSES: dict[str, list[str]] = {}


def _innermost(error: BaseException, depth: int = 0) -> list[BaseException]:
    inner = getattr(error, "exceptions", None)
    if inner and depth < 5:
        return [leaf for sub in inner for leaf in _innermost(sub, depth + 1)]
    return [error]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.excinfo is not None:
        leaves = _innermost(call.excinfo.value)
        causes = [
            f"{type(leaf).__name__}: {' '.join(str(leaf).split())[:600]}" for leaf in leaves[:3]
        ]
        # user_properties travel with the report from an xdist worker to the controller.
        report.user_properties = [*report.user_properties, ("innermost_errors", causes)]
    return report


def pytest_runtest_logreport(report):
    for name, causes in report.user_properties:
        if name == "innermost_errors":
            _ROOT_CAUSES[report.nodeid] = causes


def pytest_terminal_summary(terminalreporter):
    if _ROOT_CAUSES:
        terminalreporter.section("innermost errors of the failures")
        for nodeid, causes in _ROOT_CAUSES.items():
            for cause in causes:
                terminalreporter.write_line(f"{nodeid}: {cause}")
