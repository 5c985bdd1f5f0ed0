"""Test-wide setup: an isolated AIRFLOW_HOME with a SQLite metadata database, made before Airflow loads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def credentials_json() -> str:
    """A fresh service-account credentials.json (2048-bit RSA key) in Voximplant's format."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "account_email": "sa@example.test",
            "account_id": 4242,
            "key_id": "0b7d6f7e-1111-4c2a-9d55-000000000001",
            "private_key": pem,
        }
    )


@pytest.fixture
def run_dag(airflow_db):
    """Run a DAG defined in a test with ``dag.test()``; returns {task_id or (task_id, map_index): TI}.

    ``dag.test()`` only runs DAGs it finds serialized in the metadata DB, so the DAG is first
    written there as if the dag-processor had parsed it from the dags folder.
    """
    from datetime import UTC, datetime

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    def run(dag, **test_kwargs):
        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        # A fixed logical date and run_after give a fixed run_id: running again = clearing the run.
        test_kwargs.setdefault("logical_date", datetime(2026, 1, 1, tzinfo=UTC))
        test_kwargs.setdefault("run_after", test_kwargs["logical_date"])
        dag_run = dag.test(**test_kwargs)
        tis = {}
        for ti in dag_run.get_task_instances():
            tis[ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)] = ti
        return tis

    return run


def xcom(ti, key: str = "return_value"):
    """An XCom of a finished task instance, deserialized as a downstream task would see it."""
    from airflow.sdk.serde import deserialize

    return deserialize(ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index))
