"""An isolated Airflow home, quiet logs, and a description of the machine the numbers came from."""

from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench import REPO

_MARK = "VOXSMS_BENCH_AIRFLOW_HOME"


def isolate_airflow() -> Path:
    """Point Airflow at a temporary home (SQLite, no examples) before anything imports it.

    Child processes of the bench inherit the same home through the environment.
    """
    if "airflow" in sys.modules:
        raise RuntimeError("isolate_airflow() must run before airflow is imported")
    home = os.environ.get(_MARK)
    if not home:  # the bench's own process: nothing inherited from the caller's shell
        home = tempfile.mkdtemp(prefix="voxsms-bench-airflow-home-")
        os.environ[_MARK] = home
        os.environ.pop("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", None)
    os.environ["AIRFLOW_HOME"] = home
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{Path(home) / 'airflow.db'}"
    os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(Path(home) / "logs")
    # Plan/progress/result lines and the "execute() outside the Task Runner" warning, per run,
    # would drown the benchmark's own output. Errors still show.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    return Path(home)


def quiet_logs() -> None:
    """Keep per-run INFO lines (plans, progress, results) out of the benchmark's output."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("airflow", "airflow.task", "airflow_provider_voxsms", "httpx", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """CPU count, Python and library versions, and the date: the header of results.md."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "airflow": _version("apache-airflow"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "requests": _version("requests"),
        "voximplant-apiclient": _version("voximplant-apiclient"),
        "provider": _version("airflow-provider-voxsms"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
