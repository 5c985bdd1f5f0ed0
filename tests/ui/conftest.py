"""The provider's pages in a real Airflow UI: Debian's chromium driven by Playwright (`make test-ui`).

Tests marked ``ui`` are skipped unless selected with ``-m ui``, so plain ``pytest`` and
``make test`` (which have neither a browser nor Playwright) skip them cleanly. Screenshots go to
build/ui/, also one per failed test.

One Airflow per session: a temporary AIRFLOW_HOME on SQLite, ``airflow db migrate``, the repo's
dags/ serialised, and ``airflow api-server`` on a free loopback port in its own process group,
with the simple auth manager (everyone is admin, no login) and Test Connection enabled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if re.search(r"\bui\b", config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="browser test: run `make test-ui` (or pytest -m ui tests/ui)")
    for item in items:
        if item.get_closest_marker("ui"):
            item.add_marker(skip)


@dataclass
class AirflowUI:
    """A running api-server: its URL, and its REST API (no auth: every user is admin)."""

    url: str
    home: Path

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or "null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or "null")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
    )
    return env


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"airflow api-server exited ({server.returncode}):\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url + "/api/v2/monitor/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"airflow api-server not healthy after {timeout:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    home = tmp_path_factory.mktemp("airflow-ui-home")
    env = _airflow_env(home)
    airflow = [sys.executable, "-m", "airflow"]
    for step in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([*airflow, *step], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"airflow {' '.join(step)} failed:\n{done.stderr[-3000:]}"
    port = _free_port()
    log = home / "api-server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server, log)
        yield AirflowUI(url=url, home=home)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its worker), then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "no chromium on PATH: `make test-ui` installs Debian's (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context per test (no stored UI preferences); a screenshot if it fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        if request.node.stash.get(_FAILED, False):
            _shot(page, f"failed-{request.node.name}")
        context.close()


@pytest.fixture
def screenshot(page: Page):
    """``screenshot("name")`` saves the page, full length, as build/ui/<name>.png."""
    return lambda name: _shot(page, name)


def _shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled")  # toasts at rest
    return path
