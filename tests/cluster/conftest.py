"""A real Airflow on CeleryExecutor, on loopback, for `make test-cluster`.

Tests marked ``cluster`` are skipped unless selected with ``-m cluster``, so plain ``pytest``
and ``make test`` skip them at once. The ``cluster`` fixture starts one cluster per session:

* one PostgreSQL server (tests/pg_server.py) with two databases: ``airflow`` (the metadata DB
  and Celery's result backend) and ``voxsms`` (the ``voxsms_db`` connection: recipients,
  ledger, results and delivery tables);
* Redis, the Celery broker (Debian's ``redis-server``; `make test-cluster` installs it);
* the Voximplant emulator (``voximplant_default`` points at it);
* ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and two
  ``airflow celery worker`` processes with distinct Celery host names, on a copy of the repo's
  dags/ taken at the start.

Every server listens on 127.0.0.1 on a free port and runs in its own process group; all are
stopped at the end (SIGTERM to every process group of the component's process tree, then
SIGKILL), also when the test fails. Airflow runs with the settings the compose stack uses
(docker/airflow.env, see tests/shared_settings.py) plus what differs per environment: URLs,
ports, secrets and connections. When a test fails, the tail of every component's log (and of
the newest task logs) is printed at the very end of the run, where CI's excerpt shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from pg_server import require_pg_bin, running_postgres
from shared_settings import read_env_file

REPO = Path(__file__).resolve().parents[2]
WORKERS = ("worker-1", "worker-2")
WORKER_CONCURRENCY = 4  # task slots per worker: the survivor of a kill can run 4 shards at once
# CPU priorities (nice): on two shared cores, eight task processes sending at once starve the
# triggerer, whose watchdog measures wall time and would blame its triggers for the wait; a
# deployment gives the triggerer CPU of its own. The workers (and the tasks they run) yield to
# everything else, the triggerer goes first (when this user may raise a priority: else `nice`
# says so and runs it as it is). A trigger that holds the loop itself is seen all the same.
NICENESS = {"triggerer": -5, **dict.fromkeys(WORKERS, 10)}
START_TIMEOUT_S = 180.0  # on 2 loaded cores, six Airflow processes take a while to come up
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 25


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if re.search(r"\bcluster\b", config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="Celery cluster test: run `make test-cluster` (-m cluster)")
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(skip)


# -- processes ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def process_tree(root: int) -> list[int]:
    """``root`` and all its living descendants (zombies excluded), parents before children;
    empty when ``root`` is gone."""
    living = _living()
    if root not in living:
        return []
    children: dict[int, list[int]] = {}
    for pid in living:
        if stat := _proc_stat(pid):
            children.setdefault(stat[1], []).append(pid)
    tree, todo = [], [root]
    while todo:
        tree.append(pid := todo.pop(0))
        todo.extend(children.get(pid, []))
    return tree


def _living() -> set[int]:
    """Pids of the processes that are alive (not zombies)."""
    return {
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (_proc_stat(int(entry)) or ("Z",))[0] != "Z"
    }


def _process_groups(pids: list[int]) -> list[int]:
    groups = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            if (pgid := os.getpgid(pid)) not in groups:
                groups.append(pgid)
    return groups


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is alive (not a zombie)."""
    for pid in _living():
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pgid:
                return True
    return False


def _signal_groups(groups: list[int], sig: signal.Signals) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)


@dataclass
class Component:
    """One server of the cluster: its process (leader of its own group) and its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def groups(self) -> list[int]:
        """Process groups of the component's process tree: its own, and those its children
        made (Airflow's task supervisor puts each task process in a group of its own)."""
        return _process_groups(process_tree(self.proc.pid))

    def terminate(self) -> list[int]:
        """SIGTERM every process group of the tree; returns the groups, for `reap`. (Taken
        before the signal: a task process whose supervisor exits leaves the tree, not its
        group.)"""
        groups = self.groups() or [self.proc.pid]
        _signal_groups(groups, signal.SIGTERM)
        return groups

    def reap(self, groups: list[int], deadline: float) -> None:
        """Wait until the groups are gone or ``deadline`` (monotonic) passed, then SIGKILL
        whatever is left of them."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(map(_group_alive, groups)):
            time.sleep(0.2)
        _signal_groups(groups, signal.SIGKILL)
        self.proc.wait()

    def runs(self, pid: int | None) -> bool:
        """Whether ``pid`` is alive in this component's process tree."""
        return pid is not None and pid in process_tree(self.proc.pid)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log, lines)


BLOCKED_LOOP = "async thread was blocked"  # the triggerer's watchdog: a trigger held its loop


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Component:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: signalled and killed as a whole
        )
    return Component(name, proc, log)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], what: str, timeout: float, interval: float = 1.0) -> Any:
    """Call ``check`` until it returns something other than None or False (returned, so that
    a map index 0 counts); TimeoutError after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- the cluster ----------------------------------------------------------------------------------


@dataclass
class KilledWorker:
    """What `Cluster.kill_worker_running` killed: the worker, and every process of its tree."""

    name: str
    task_pid: int
    pids: list[int]
    groups: list[int]


@dataclass
class Cluster:
    """The running cluster: where its servers listen, its components, and helpers to drive it."""

    home: Path
    api_url: str
    emulator_url: str  # the emulator's root (``/platform_api`` and ``/_emulator/*`` below it)
    voxsms_dsn: str  # the voxsms_db connection's database
    env: dict[str, str] = field(repr=False)  # what every Airflow component runs with
    components: dict[str, Component] = field(default_factory=dict, repr=False)
    _token: str | None = field(default=None, repr=False)

    @staticmethod
    def wait(check: Callable[[], Any], what: str, timeout: float, interval: float = 1.0) -> Any:
        """`wait_until`, for the tests (which get the cluster, not this module)."""
        return wait_until(check, what, timeout, interval)

    # REST API of the api-server (simple auth manager, everyone admin: a token for the asking)

    def api(self, method: str, path: str, body: dict | None = None, **query: Any) -> Any:
        """Call ``/api/v2/<path>`` with a JSON body; returns the JSON answer, raises on HTTP
        errors with the answer's body."""
        if self._token is None:
            self._token = _http("GET", f"{self.api_url}/auth/token")["access_token"]
        url = f"{self.api_url}/api/v2/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return _http(method, url, body, {"Authorization": f"Bearer {self._token}"})

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
        found = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)[
            "task_instances"
        ]
        return [ti for ti in found if task_id is None or ti["task_id"] == task_id]

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
        (ti,) = [
            ti
            for ti in self.task_instances(dag_id, run_id, task_id)
            if ti["map_index"] == map_index
        ]
        return ti

    def return_value(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            map_index=map_index,
            deserialize="true",
        )
        return entry["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The events of a task instance's latest try, one per line."""
        ti = self.task_instance(dag_id, run_id, task_id, map_index)
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{ti['try_number']}"
        content = self.api("GET", path, map_index=map_index, full_content="true")["content"]
        return "\n".join(
            str(entry.get("event", entry)) if isinstance(entry, dict) else str(entry)
            for entry in content
        )

    # the emulator's introspection endpoints

    def emulator(self, path: str, body: dict | None = None) -> Any:
        """``GET /_emulator/<path>``, or POST the JSON ``body``."""
        return _http(
            "GET" if body is None else "POST", f"{self.emulator_url}/_emulator/{path}", body
        )

    # the voxsms database

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with contextlib.closing(psycopg2.connect(self.voxsms_dsn)) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows

    # faults

    @property
    def workers(self) -> list[Component]:
        return [self.components[name] for name in WORKERS]

    def kill_worker_running(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> KilledWorker:
        """SIGKILL the Celery worker that runs this task instance, with its whole process tree.

        The worker is the one whose process tree holds the task instance's pid. Its tree has
        several process groups (the worker's own, and one per task process, which Airflow's
        supervisor puts in a group of its own), so, as when a machine dies, every group is
        first stopped (SIGSTOP: no process of the tree can react, report or send anything
        more), then killed. Returns once none of those processes is alive.
        """
        ti = self.task_instance(dag_id, run_id, task_id, map_index)
        assert ti["state"] == "running" and ti["pid"], ti
        (worker,) = [w for w in self.workers if w.runs(ti["pid"])]
        pids = process_tree(worker.proc.pid)
        groups = _process_groups(pids)
        _signal_groups(groups, signal.SIGSTOP)
        _signal_groups(groups, signal.SIGKILL)
        worker.proc.wait(10)
        wait_until(lambda: not any(map(_group_alive, groups)), f"{worker.name} gone", 10, 0.1)
        return KilledWorker(worker.name, ti["pid"], pids, groups)

    # logs

    def log_size(self, name: str) -> int:
        """How long a component's log is now (where to read from for what follows)."""
        return self.components[name].log.stat().st_size

    def log_since(self, name: str, offset: int) -> str:
        """A component's log from ``offset`` (a `log_size`) on."""
        with self.components[name].log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def blocked_loop_warnings(self, offset: int = 0) -> list[str]:
        """The triggerer's warnings, since ``offset`` in its log, that its event loop was held
        longer than ``[triggerer] blocked_main_thread_warning_threshold`` (0.2 s): every
        deferred task of the deployment waited that long."""
        return [
            line
            for line in self.log_since("triggerer", offset).splitlines()
            if BLOCKED_LOOP in line
        ]

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """The tail of every component's log, then of the three newest task logs."""
        parts = [f"--- {c.name} ({c.log}) ---\n{c.tail(lines)}" for c in self.components.values()]
        task_logs = sorted(
            (self.home / "airflow" / "logs").glob("dag_id=*/**/*.log"),
            key=lambda p: p.stat().st_mtime,
        )
        for path in task_logs[-3:]:
            parts.append(f"--- task log {path.relative_to(self.home)} ---\n{_tail(path, lines)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every component: SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`. Airflow's
        components first, all at once, then the emulator and Redis; PostgreSQL is the
        fixture's to stop, last."""
        servers = ("emulator", "redis")
        airflow = [c for name, c in self.components.items() if name not in servers]
        for wave in (airflow, [self.components[n] for n in servers if n in self.components]):
            groups = [component.terminate() for component in wave]
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for component, its_groups in zip(wave, groups, strict=True):
                component.reap(its_groups, deadline)


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or "null")
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{method} {url}: HTTP {err.code}: {err.read()[:2000]!r}") from None


# -- starting it ----------------------------------------------------------------------------------


def _airflow_env(
    home: Path,
    *,
    dags: Path,
    metadata: str,
    broker: str,
    api_port: int,
    emulator: str,
    state: Path,
    voxsms: str,
) -> dict[str, str]:
    """The shared settings (docker/airflow.env), then what differs in this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(read_env_file())
    connection = {
        "conn_type": "voximplant",
        "host": f"{emulator}/platform_api",
        "extra": {"credentials_path": str(state / "credentials.json")},
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata.replace(
            "postgresql://", "postgresql+psycopg2://"
        ),
        AIRFLOW__CELERY__RESULT_BACKEND=f"db+{metadata}",
        AIRFLOW__CELERY__BROKER_URL=broker,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{api_port}",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST="127.0.0.1",
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=str(_free_port()),
        AIRFLOW_CONN_VOXIMPLANT_DEFAULT=json.dumps(connection),
        AIRFLOW_CONN_VOXSMS_DB=voxsms,
    )
    return env


def _start_redis(logs: Path, work: Path) -> tuple[Component, str]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("no redis-server on PATH: `make test-cluster` installs Debian's")
    port = _free_port()
    argv = [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work)]
    component = _start("redis", [*argv, "--save", "", "--appendonly", "no"], dict(os.environ), logs)
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        import redis

        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
            return bool(client.ping())
        return False

    _wait_alive(component, answers, "redis answers PING")
    return component, url


def _start_emulator(logs: Path, state: Path) -> tuple[Component, str]:
    port = _free_port()
    argv = [sys.executable, "-m", "airflow_provider_voxsms.emulator", "--port", str(port)]
    component = _start("emulator", [*argv, "--state-dir", str(state)], dict(os.environ), logs)
    url = f"http://127.0.0.1:{port}"
    _wait_alive(component, lambda: _answers(f"{url}/_emulator/health"), "emulator healthy")
    return component, url


def _answers(url: str) -> Any:
    try:
        return _http("GET", url)
    except (OSError, AssertionError):
        return None


def _wait_alive(component: Component, check: Callable[[], Any], what: str) -> Any:
    def alive_and_ready() -> Any:
        if component.proc.poll() is not None:
            raise RuntimeError(
                f"{component.name} exited ({component.proc.returncode}):\n{component.tail()}"
            )
        return check()

    return wait_until(alive_and_ready, what, START_TIMEOUT_S, 0.5)


def _create_database(dsn: str, name: str) -> str:
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def _start_airflow(cluster: Cluster, logs: Path, api_port: int) -> None:
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run(
        [*airflow, "db", "migrate"], env=cluster.env, capture_output=True, text=True, timeout=300
    )
    (logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stderr[-3000:]}"
    commands = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port)],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    for name in WORKERS:  # no log server: both would take [logging] worker_log_server_port
        commands[name] = [
            *("celery", "worker", "--celery-hostname", _nodename(name)),
            *("--concurrency", str(WORKER_CONCURRENCY), "--skip-serve-logs"),
        ]
    for name, argv in commands.items():
        cluster.components[name] = _start(
            name, [*_niceness(name), *airflow, *argv], cluster.env, logs
        )

    api = cluster.components["api-server"]
    health_url = f"{cluster.api_url}/api/v2/monitor/health"
    _wait_alive(api, lambda: _answers(health_url), "api-server answers")

    def all_healthy() -> bool:
        for component in cluster.components.values():
            if component.proc.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited ({component.proc.returncode}):\n{component.tail()}"
                )
        health = _answers(health_url) or {}
        unhealthy = [
            name
            for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if (health.get(name) or {}).get("status") != "healthy"
        ]
        return not unhealthy and _workers_answer(cluster.env["AIRFLOW__CELERY__BROKER_URL"])

    wait_until(all_healthy, "every Airflow component healthy, both workers ready", START_TIMEOUT_S)


def _niceness(name: str) -> list[str]:
    """The ``nice`` prefix of a component's command (see `NICENESS`)."""
    return ["nice", "-n", str(NICENESS[name])] if name in NICENESS else []


def _workers_answer(broker: str) -> bool:
    """Whether both workers answer a Celery ping through the broker (they consume tasks)."""
    from celery import Celery

    app = Celery(broker=broker)
    try:
        replies = app.control.ping(destination=[_nodename(n) for n in WORKERS], timeout=1.0)
    finally:
        app.close()
    return {name for reply in replies for name in reply} == {_nodename(n) for n in WORKERS}


def _nodename(worker: str) -> str:
    return f"{worker}@127.0.0.1"


_PYCACHE = shutil.ignore_patterns("__pycache__")
_RUNNING: list[Cluster] = []  # the session's cluster, for the log tails of a failed run


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The running cluster; everything it started is stopped at the end of the session."""
    bindir = require_pg_bin()
    base = tmp_path_factory.mktemp("cluster")
    logs, state, work = base / "logs", base / "emulator", base / "redis"
    for directory in (logs, state, work):
        directory.mkdir()
    with contextlib.ExitStack() as stack:
        metadata = stack.enter_context(running_postgres(bindir, dbname="airflow"))
        voxsms = _create_database(metadata, "voxsms")
        redis, broker = _start_redis(logs, work)
        api_port = _free_port()
        cluster = Cluster(
            home=base,
            api_url=f"http://127.0.0.1:{api_port}",
            emulator_url="",
            voxsms_dsn=voxsms,
            env={},
            components={"redis": redis},
        )
        _RUNNING.append(cluster)
        stack.callback(cluster.stop)
        cluster.components["emulator"], cluster.emulator_url = _start_emulator(logs, state)
        # The repo's dags/ as it is now: an edit while the cluster runs cannot change a DAG
        # under a running DAG run (the dag-processor re-parses, workers parse at each start).
        dags = shutil.copytree(REPO / "dags", base / "dags", ignore=_PYCACHE)
        cluster.env = _airflow_env(
            base / "airflow",
            dags=dags,
            metadata=metadata,
            broker=broker,
            api_port=api_port,
            emulator=cluster.emulator_url,
            state=state,
            voxsms=voxsms,
        )
        _start_airflow(cluster, logs, api_port)
        yield cluster


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        _FAILED.append(item.nodeid)
    return report


_FAILED: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter) -> None:
    """After a failure: the tail of every component's log, at the end of the output."""
    if _FAILED and _RUNNING:
        terminalreporter.section("cluster logs (tails)")
        terminalreporter.write_line(_RUNNING[-1].log_tails())
