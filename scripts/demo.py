"""`make demo`: run the voxsms_campaign example end to end on this machine, no account needed.

An isolated AIRFLOW_HOME (SQLite) under .demo/, the Voximplant emulator in the background, the
two connections as environment variables, one `airflow dags test` run, then a short report.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
AIRFLOW_HOME = DEMO / "airflow"
EMULATOR_STATE = DEMO / "emulator"
FAILED_DB = AIRFLOW_HOME / "voxsms.db"
BLOCKED = "447443332299,447443332298"  # the emulator refuses these (code 509), to show failures
BIN = Path(sys.executable).parent


def free_port(preferred: int = 8025) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"The emulator did not answer at {url}; see {DEMO}/emulator.log"
                ) from None
            time.sleep(0.2)


def main() -> None:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = os.environ.copy()
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_VOXIMPLANT_DEFAULT=json.dumps(
            {
                "conn_type": "voximplant",
                "host": f"{origin}/platform_api",
                "extra": {"credentials_path": str(EMULATOR_STATE / "credentials.json")},
            }
        ),
        AIRFLOW_CONN_VOXSMS_DB=f"sqlite://{FAILED_DB}",
    )
    print(f"[demo] AIRFLOW_HOME={AIRFLOW_HOME}")
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

    print(f"[demo] starting the Voximplant emulator at {origin} (blocked numbers: {BLOCKED})")
    with open(DEMO / "emulator.log", "w") as log:
        emulator = subprocess.Popen(
            [BIN / "voxsms-emulator", "--port", str(port), "--state-dir", EMULATOR_STATE]
            + ["--blocked-numbers", BLOCKED],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"{origin}/_emulator/health")
        print("[demo] running: airflow dags test voxsms_campaign")
        started = time.monotonic()
        run = subprocess.run(
            [BIN / "airflow", "dags", "test", "voxsms_campaign"],
            env=env,
            capture_output=True,
            text=True,
        )
        (DEMO / "dags-test.log").write_text(run.stdout + run.stderr)
        print(f"[demo] DAG run finished in {time.monotonic() - started:.1f} s")
        report(origin)
        if run.returncode != 0 or "state=failed" in run.stdout + run.stderr:
            raise SystemExit(f"[demo] the DAG run failed; see {DEMO / 'dags-test.log'}")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    print(
        f"\nWhere to look next:\n"
        f"  full run log:         {DEMO / 'dags-test.log'}\n"
        f"  failed-number table:  sqlite3 {FAILED_DB} 'select * from sms_failed_numbers'\n"
        f"  emulator messages:    {origin}/_emulator/messages (while it runs: "
        f".venv/bin/voxsms-emulator --state-dir {EMULATOR_STATE})\n"
        f"  the Airflow UI:       AIRFLOW_HOME={AIRFLOW_HOME} "
        f"AIRFLOW__CORE__DAGS_FOLDER={REPO / 'dags'} .venv/bin/airflow standalone\n"
        f"                        (export the two AIRFLOW_CONN_* variables printed in "
        f"{DEMO / 'connections.env'} first)"
    )
    (DEMO / "connections.env").write_text(
        "".join(
            f"export {name}='{env[name]}'\n"
            for name in ("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", "AIRFLOW_CONN_VOXSMS_DB")
        )
    )


def report(origin: str) -> None:
    with urllib.request.urlopen(f"{origin}/_emulator/messages", timeout=5) as response:
        messages = json.load(response)
    messages = messages.get("messages", messages) if isinstance(messages, dict) else messages
    with sqlite3.connect(FAILED_DB) as db:
        run_id = db.execute(
            "select run_id from sms_failed_numbers order by logged_at desc limit 1"
        ).fetchone()
        rows = db.execute(
            "select destination_number, error_code, error_description, stage "
            "from sms_failed_numbers where run_id = ? order by stage, destination_number",
            run_id or ("",),
        ).fetchall()
    print(f"\n[demo] SMS accepted by the emulator: {len(messages)}")
    print(f"[demo] failed numbers logged to sms_failed_numbers: {len(rows)}")
    print(f"  {'destination_number':<20} {'code':>5}  {'stage':<10} error_description")
    for number, code, description, stage in rows[:10]:
        print(f"  {number:<20} {code if code is not None else '':>5}  {stage:<10} {description}")


if __name__ == "__main__":
    main()
