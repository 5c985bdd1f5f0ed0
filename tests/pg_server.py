"""A throwaway PostgreSQL server for tests: initdb in a temp dir, run on a free loopback port.

`running_postgres()` is the context manager; `postgres_uri` is the session-scoped pytest fixture
built on it. Tests that use the fixture skip when no PostgreSQL binaries are found, unless
``VOXSMS_REQUIRE_POSTGRES=1`` (set by CI), in which case they fail.

PostgreSQL refuses to run as root, so when the tests run as root every server process runs as
the ``postgres`` system user (the temp dir is handed to that user).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "VOXSMS_REQUIRE_POSTGRES"
START_TIMEOUT = 30.0
DBNAME = "voxsms"
_NEEDED = ("initdb", "postgres", "pg_ctl", "pg_isready", "createdb")
_PR_SET_PDEATHSIG = 1


def find_pg_bin() -> Path | None:
    """Return the directory holding initdb, postgres, pg_ctl, pg_isready and createdb, or None.

    Looks at ``initdb`` on PATH first (following symlinks into the real bin directory), then at
    ``/usr/lib/postgresql/<version>/bin``, newest version first.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    candidates.extend(Path(p) for p in versioned)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _NEEDED):
            return bindir
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass(frozen=True)
class _RunAs:
    """Who server processes run as: the postgres user when we are root, else ourselves."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_current_user(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls()
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "running as root, and PostgreSQL refuses root: no 'postgres' user to run it as"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)


def _die_with_parent() -> Callable[[], None]:
    """preexec_fn: ask Linux to send the server SIGINT (fast shutdown) if pytest dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return lambda: None

    def preexec() -> None:
        # Runs after the uid switch (which would have cleared the setting).
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env() -> dict[str, str]:
    # PG* variables from the caller's shell (PGDATA, PGPORT, ...) must not steer our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


_NOT_DURABLE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


@contextlib.contextmanager
def running_postgres(
    bindir: Path, *, dbname: str = DBNAME, timeout: float = START_TIMEOUT, durable: bool = False
) -> Iterator[str]:
    """Run a fresh PostgreSQL server until the block exits; yields ``postgresql://...`` for it.

    :param bindir: directory with the PostgreSQL binaries (see `find_pg_bin`).
    :param dbname: database created in the new cluster and named in the URI.
    :param timeout: seconds to wait for the server to accept connections before failing with
        the tail of its log.
    :param durable: flush every commit to disk as a production server does (benchmarks);
        tests leave it off, which is faster and loses nothing they need.
    """
    run_as = _RunAs.for_current_user()
    env = _child_env()
    base = Path(tempfile.mkdtemp(prefix="voxsms-pg-"))
    run_as.chown(base)
    data = base / "data"
    log_path = base / "server.log"
    proc: subprocess.Popen | None = None
    try:
        initdb = subprocess.run(
            [
                bindir / "initdb",
                *("-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                *("--no-locale", "--no-sync", "--no-instructions"),
            ],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **run_as.popen_kwargs(),
        )
        if initdb.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({initdb.returncode}):\n{initdb.stdout}{initdb.stderr}"
            )

        for _attempt in range(3):  # the free port can be taken between our probe and the bind
            port = _free_port()
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [
                        bindir / "postgres",
                        *("-D", data, "-p", str(port)),
                        *("-c", "listen_addresses=127.0.0.1"),
                        *("-c", f"unix_socket_directories={base}"),
                        *(() if durable else _NOT_DURABLE),
                    ],
                    cwd=base,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                    **run_as.popen_kwargs(),
                )
            if _wait_ready(bindir, proc, port, env, timeout):
                break
            if proc.poll() is None:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections within {timeout:g} s on port {port}; "
                    f"server log tail:\n{_tail(log_path)}"
                )
            if "could not bind" not in _tail(log_path, 10):
                raise RuntimeError(
                    f"PostgreSQL exited with code {proc.returncode} while starting; "
                    f"server log tail:\n{_tail(log_path)}"
                )
        else:
            raise RuntimeError(f"PostgreSQL could not bind a port; log tail:\n{_tail(log_path)}")

        created = subprocess.run(
            [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", dbname],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(f"createdb {dbname} failed: {created.stderr.strip()}")
        yield f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
    finally:
        if proc is not None:
            _stop(bindir, proc, data, env, run_as)
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(
    bindir: Path, proc: subprocess.Popen, port: int, env: dict[str, str], timeout: float
) -> bool:
    """True once the server answers; False if it exited or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        probe = subprocess.run(
            [
                bindir / "pg_isready",
                *("-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"),
                *("-U", "postgres", "-d", "postgres"),
            ],
            env=env,
            capture_output=True,
        )
        if probe.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def _stop(
    bindir: Path, proc: subprocess.Popen, data: Path, env: dict[str, str], run_as: _RunAs
) -> None:
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                [bindir / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "20"],
                cwd=data.parent,
                env=env,
                capture_output=True,
                timeout=30,
                **run_as.popen_kwargs(),
            )
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # pg_ctl failed or is stuck: immediate shutdown, then no more waiting.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGQUIT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def require_pg_bin() -> Path:
    """The PostgreSQL bin directory; skips the test if there is none, or fails it under CI."""
    bindir = find_pg_bin()
    if bindir is None:
        msg = (
            "PostgreSQL is not installed: no initdb/postgres/pg_ctl/pg_isready/createdb "
            "on PATH or in /usr/lib/postgresql/*/bin"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{msg} (and {REQUIRE_ENV}=1 makes PostgreSQL tests mandatory)")
        pytest.skip(msg)
    return bindir


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """URI of a PostgreSQL database on a throwaway server, shared by the whole test session."""
    with running_postgres(require_pg_bin()) as uri:
        yield uri
