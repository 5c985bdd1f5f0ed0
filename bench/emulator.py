"""The emulator in its own process (``voxsms-emulator --tls --port 0``), so that client and server
never share a GIL: what a real deployment looks like, and fair to both clients.

Faults, reset and stats go through the emulator's HTTP introspection (``/_emulator/...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

_SERVING = re.compile(r"serving the Management API at (https://\S+)/platform_api")


class EmulatorProcess:
    """``with EmulatorProcess() as emu:`` runs the emulator CLI over HTTPS on a free port.

    ``base_url``, ``endpoint`` (host:port, what the vendor client takes), ``credentials_path``,
    ``ca_path``, ``pid`` and ``connection_json()`` describe it once started.
    """

    def __init__(self, startup_timeout_s: float = 60.0):
        self._timeout = startup_timeout_s
        self._dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self.origin = ""

    def __enter__(self) -> EmulatorProcess:
        self._dir = Path(tempfile.mkdtemp(prefix="voxsms-bench-emulator-"))
        cli = Path(sys.executable).with_name("voxsms-emulator")
        command = (
            [str(cli)]
            if cli.exists()
            else [sys.executable, "-m", "airflow_provider_voxsms.emulator"]
        )
        command += ["--tls", "--port", "0", "--state-dir", str(self._dir / "state")]
        self._log = open(self._dir / "emulator.log", "w+b")
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + self._timeout
        while not self.origin:
            line = self._proc.stdout.readline().decode()
            if match := _SERVING.search(line):
                self.origin = match.group(1)
            elif not line or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the emulator did not start: {self._log_tail()}")
        self._ssl = ssl.create_default_context(cafile=str(self.ca_path))
        while True:  # uvicorn prints after binding, before serving: wait for an answer
            try:
                self._get("/_emulator/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc.stdout.close()
            self._proc = None
        with contextlib.suppress(Exception):
            self._log.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- what clients need ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def base_url(self) -> str:
        return f"{self.origin}/platform_api"

    @property
    def endpoint(self) -> str:
        return self.origin.split("://", 1)[1]

    @property
    def credentials_path(self) -> Path:
        return self._dir / "state" / "credentials.json"

    @property
    def ca_path(self) -> Path:
        return self._dir / "state" / "tls" / "ca.pem"

    def connection_json(self) -> str:
        conn = {
            "conn_type": "voximplant",
            "host": self.base_url,
            "password": self.credentials_path.read_text(),
        }
        return json.dumps(conn)

    def client_env(self) -> dict[str, str]:
        """Environment for any client of this emulator: the CA to trust and the connection."""
        return {
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "AIRFLOW_CONN_VOXIMPLANT_DEFAULT": self.connection_json(),
        }

    # -- introspection -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget messages and stats; faults go back to none."""
        self._post("/_emulator/reset", {})

    def set_faults(self, **faults: object) -> dict:
        return self._post("/_emulator/faults?replace=true", faults)

    def stats(self) -> dict:
        return self._get("/_emulator/stats")

    def rss_mib(self) -> float:
        """The emulator process's resident memory now."""
        import psutil

        return psutil.Process(self.pid).memory_info().rss / 2**20

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.origin + path, context=self._ssl, timeout=30) as answer:
            return json.loads(answer.read())

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.origin + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, context=self._ssl, timeout=30) as answer:
            return json.loads(answer.read())

    def _log_tail(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]
