"""Test-wide setup: an isolated AIRFLOW_HOME with a SQLite metadata database, made before Airflow loads."""

from __future__ import annotations

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
    """``run_dag_once`` for tests, with the metadata DB ready."""
    return run_dag_once
