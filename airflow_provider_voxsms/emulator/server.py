"""Run the emulator app with uvicorn in a background thread, as a context manager."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from airflow_provider_voxsms.emulator.app import create_app
from airflow_provider_voxsms.emulator.credentials import Credentials
from airflow_provider_voxsms.emulator.faults import Faults
from airflow_provider_voxsms.emulator.state import EmulatorConfig, EmulatorState
from airflow_provider_voxsms.emulator.tls import TlsFiles, load_or_create_tls


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one, so the address is known before start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(state: EmulatorState, tls: TlsFiles | None = None) -> uvicorn.Server:
    """A quiet uvicorn server for the emulator app (shared by EmulatorServer and the CLI)."""
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        ssl_certfile=str(tls.cert_path) if tls else None,
        ssl_keyfile=str(tls.key_path) if tls else None,
    )
    return uvicorn.Server(config)


class EmulatorServer:
    """The emulator on 127.0.0.1 in a background thread; use as ``with EmulatorServer() as s:``.

    :param state: the state to serve (a fresh one with new credentials by default).
    :param port: 0 picks a free port.
    :param tls: serve HTTPS with a certificate for 127.0.0.1/localhost; trust ``cert_path``.
    :param tls_dir: where to keep the TLS files (a temporary directory by default).
    :param faults: initial faults when ``state`` is not given; :param config: likewise.
    """

    def __init__(
        self,
        state: EmulatorState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        tls_dir: str | Path | None = None,
        credentials: Credentials | None = None,
        config: EmulatorConfig | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.state = state or EmulatorState(credentials, config=config, faults=faults)
        self.host, self._port = host, port
        self._tmp = None
        self.tls: TlsFiles | None = None
        if tls:
            if tls_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="voxsms-emulator-tls-")
                tls_dir = self._tmp.name
            self.tls = load_or_create_tls(tls_dir)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        """``http(s)://host:port``; introspection lives under ``origin + "/_emulator"``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The Management API base URL, like ``https://api.voximplant.com/platform_api``."""
        return f"{self.origin}/platform_api"

    @property
    def endpoint(self) -> str:
        """``host:port``: what the official clients take as ``endpoint`` (they add https://)."""
        return self.origin.split("://", 1)[1]

    @property
    def cert_path(self) -> Path | None:
        """The CA certificate to trust (e.g. REQUESTS_CA_BUNDLE) when serving TLS."""
        return self.tls.ca_path if self.tls else None

    @property
    def credentials_json(self) -> str:
        return self.state.credentials.to_json()

    def connection_json(self, **extra: Any) -> str:
        """The Airflow connection as JSON, for ``AIRFLOW_CONN_VOXIMPLANT_DEFAULT``."""
        conn = {"conn_type": "voximplant", "host": self.base_url, "password": self.credentials_json}
        conn.update(extra)
        return json.dumps(conn)

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Start serving and wait until the server accepts connections."""
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self._port)
        self._port = sock.getsockname()[1]
        self._server = uvicorn_server(self.state, self.tls)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"voxsms-emulator-{self._port}",
            daemon=True,
        )
        self._thread.start()
        self._sock = sock
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError("the Voximplant emulator did not start")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit, force it if it lingers, and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._server = self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
