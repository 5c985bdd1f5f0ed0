"""`make bench`: throughput, latency-bound speed-up, memory and scaling of the provider.

Every figure is measured against the Voximplant emulator running in its own process over HTTPS,
next to the vendor's own client (``voximplant-apiclient``) in a plain loop, on the same machine
and in the same run. ``python -m bench --help`` lists the options; results go to
``bench/results.md`` and what the profiles show to ``bench/NOTES.md``.

Nothing in this package imports Airflow at module level: :func:`bench.env.isolate_airflow` must
set ``AIRFLOW_HOME`` before the first Airflow import.
"""

import sys
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def pg_server() -> ModuleType:
    """``tests/pg_server.py``: the throwaway PostgreSQL server the tests start, for the bench's
    PostgreSQL sections (imported from tests/, which is not a package)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import pg_server as module
    finally:
        sys.path.remove(str(REPO / "tests"))
    return module
