"""``voxsms-emulator`` / ``python -m airflow_provider_voxsms.emulator`` as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_voxsms.emulator import Credentials
from airflow_provider_voxsms.testing.tokens import auth_header

PREFIX = "AIRFLOW_CONN_VOXIMPLANT_DEFAULT="


def start(state_dir: Path, *flags: str) -> tuple[subprocess.Popen, dict]:
    """Start the CLI on a free port; return the process and the printed connection."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_voxsms.emulator",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    for line in proc.stdout:
        if line.startswith(PREFIX):
            return proc, json.loads(line[len(PREFIX) :].strip().strip("'"))
        if time.monotonic() > deadline:
            break
    proc.kill()
    pytest.fail(f"no connection line; stderr: {proc.stderr.read()}")


def wait_ready(url: str, **kw) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url, timeout=1, **kw)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM; uvicorn shuts down gracefully, then re-raises the signal (exit -15)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_creates_credentials_serves_and_reuses_them(tmp_path):
    proc, conn = start(tmp_path, "--latency-ms", "1", "--blocked-numbers", "447443332299")
    try:
        assert conn["conn_type"] == "voximplant" and conn["host"].startswith("http://127.0.0.1:")
        saved = (tmp_path / "credentials.json").read_text()
        assert json.loads(saved) == json.loads(conn["password"])
        assert oct((tmp_path / "credentials.json").stat().st_mode & 0o777) == "0o600"
        origin = conn["host"].removesuffix("/platform_api")
        wait_ready(f"{origin}/_emulator/health")
        creds = Credentials.from_json(saved)
        r = requests.post(
            conn["host"] + "/A2PSendSms",
            params={
                "src_number": "VoxDemo",
                "dst_numbers": "447443332212;447443332299",
                "text": "from the CLI",
            },
            headers=auth_header(creds),
            timeout=5,
        )
        assert len(r.json()["result"]) == 1 and r.json()["failed"][0]["error_code"] == 509
        assert requests.get(f"{origin}/_emulator/faults", timeout=5).json()["latency_ms"] == 1
    finally:
        assert stop(proc) in (0, -signal.SIGTERM)

    proc, again = start(tmp_path, "--tls")
    try:
        assert json.loads(again["password"])["key_id"] == creds.key_id
        assert again["host"].startswith("https://")
        ca = tmp_path / "tls" / "ca.pem"
        wait_ready(again["host"].removesuffix("/platform_api") + "/_emulator/health", verify=ca)
    finally:
        assert stop(proc) in (0, -signal.SIGTERM)


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("voxsms-emulator")
    if not script.exists():
        pytest.skip("package not installed with its console scripts")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--insufficient-money-after" in out.stdout


def test_every_fault_has_a_flag():
    from airflow_provider_voxsms.emulator.__main__ import build_parser, faults_from_args

    args = build_parser().parse_args(["--history-lag-s", "0.5", "--http-503-burst", "2"])
    faults = faults_from_args(args)
    assert (faults.history_lag_s, faults.http_503_burst) == (0.5, 2)
