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
    """Start the CLI on a free port; return the process and the printed connection.

    ``proc.banner`` holds the lines printed before the connection line.
    """
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
    proc.banner = []
    for line in proc.stdout:
        if line.startswith(PREFIX):
            return proc, json.loads(line[len(PREFIX) :].strip().strip("'"))
        proc.banner.append(line.rstrip("\n"))
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


def send(conn: dict, src: str, numbers: str, text: str = "hi", **params) -> dict:
    """One A2PSendSms call to a CLI emulator (after ``wait_ready``)."""
    creds = Credentials.from_json(conn["password"])
    data = {"cmd": "A2PSendSms", "src_number": src, "dst_numbers": numbers, "text": text, **params}
    r = requests.post(conn["host"], data=data, headers=auth_header(creds), timeout=5)
    return r.json()


def test_banner_lists_the_sender_ids_and_sender_id_adds_one(tmp_path):
    proc, conn = start(tmp_path, "--sender-id", "MyBrand", "--sender-id", "Shop")
    try:
        accepted = "447443332211, MyBrand, Shop, VoxDemo"
        assert f"accepted SenderIDs (src_number): {accepted} (add one with --sender-id)" in (
            proc.banner
        )
        wait_ready(conn["host"].removesuffix("/platform_api") + "/_emulator/health")
        assert len(send(conn, "MyBrand", "447443332212")["result"]) == 1
        assert len(send(conn, "VoxDemo", "447443332212")["result"]) == 1  # defaults stay
        error = send(conn, "Other", "447443332212")["error"]
        assert error["code"] == 507 and f"accepts {accepted} (add one" in error["msg"]
    finally:
        stop(proc)


def test_messages_survive_a_restart_on_the_same_state_dir(tmp_path):
    proc, conn = start(tmp_path)
    try:
        origin = conn["host"].removesuffix("/platform_api")
        wait_ready(f"{origin}/_emulator/health")
        first = send(conn, "VoxDemo", "447443332212;447443332213", text="one")["result"]
        send(conn, "447443332211", "447443332212", text="two, with a body", store_body="true")
        before = requests.get(f"{origin}/_emulator/messages", timeout=5).json()
    finally:
        stop(proc)
    assert len(before) == 3 and before[0]["message_id"] == first[0]["message_id"]
    assert (tmp_path / "messages.jsonl").exists()

    proc, conn = start(tmp_path)
    try:
        origin = conn["host"].removesuffix("/platform_api")
        assert any(
            line.endswith(f"3 kept from earlier runs; {origin}/_emulator/messages")
            for line in proc.banner
        ), proc.banner
        wait_ready(f"{origin}/_emulator/health")
        assert requests.get(f"{origin}/_emulator/messages", timeout=5).json() == before
        creds = Credentials.from_json(conn["password"])
        history = requests.post(
            conn["host"], data={"cmd": "A2PGetSmsHistory"}, headers=auth_header(creds), timeout=5
        ).json()["result"]
        assert [h["message_id"] for h in history] == [m["message_id"] for m in before]
        assert history[2]["text"] == "two, with a body"
        again = send(conn, "VoxDemo", "447443332213", text="one")
        assert again["result"][0]["message_id"] == before[-1]["message_id"] + 1
        stats = requests.get(f"{origin}/_emulator/stats", timeout=5).json()
        assert (stats["accepted"], stats["duplicates"]) == (4, 1)  # a re-send across restarts
        requests.post(f"{origin}/_emulator/reset", timeout=5).raise_for_status()
        assert (tmp_path / "messages.jsonl").read_text() == ""
    finally:
        stop(proc)

    proc, conn = start(tmp_path)
    try:
        origin = conn["host"].removesuffix("/platform_api")
        wait_ready(f"{origin}/_emulator/health")
        assert requests.get(f"{origin}/_emulator/messages", timeout=5).json() == []
        assert send(conn, "VoxDemo", "447443332212")["result"][0]["message_id"] == 1_000_001
    finally:
        stop(proc)
