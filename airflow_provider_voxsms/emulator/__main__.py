"""``voxsms-emulator``: run the Voximplant emulator from a shell until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from airflow_provider_voxsms.emulator.credentials import load_or_create
from airflow_provider_voxsms.emulator.faults import Faults
from airflow_provider_voxsms.emulator.server import bind_socket, uvicorn_server
from airflow_provider_voxsms.emulator.state import DEFAULT_SENDER_IDS, EmulatorConfig, EmulatorState
from airflow_provider_voxsms.emulator.store import MESSAGES_FILE
from airflow_provider_voxsms.emulator.tls import load_or_create_tls


def build_parser() -> argparse.ArgumentParser:
    """The CLI; one ``--fault-name`` flag per Faults field, so new faults need no CLI edits."""
    p = argparse.ArgumentParser(
        prog="voxsms-emulator", description="Local Voximplant Management API emulator."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    p.add_argument(
        "--state-dir",
        default="./.voxsms-emulator",
        help=f"credentials, TLS files and the accepted messages ({MESSAGES_FILE}, kept across "
        "restarts; POST /_emulator/reset empties it)",
    )
    p.add_argument("--tls", action="store_true", help="serve HTTPS; trust <state-dir>/tls/ca.pem")
    p.add_argument(
        "--public-host", help="host name clients use in the printed connection (default: --host)"
    )
    p.add_argument(
        "--sender-id",
        action="append",
        dest="sender_ids",
        default=[],
        metavar="NAME",
        help="also accept this src_number (SenderID); repeatable. Always accepted: "
        + ", ".join(sorted(DEFAULT_SENDER_IDS)),
    )
    faults = p.add_argument_group("faults (see airflow_provider_voxsms.emulator.faults.Faults)")
    for f in dataclasses.fields(Faults):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "blocked_numbers":
            faults.add_argument(flag, default="", help="comma-separated numbers (code 509)")
        else:
            kind = {"float": float, "str": str}.get(str(f.type).split(" ")[0], int)
            faults.add_argument(flag, type=kind, default=f.default, metavar=kind.__name__.upper())
    return p


def faults_from_args(args: argparse.Namespace) -> Faults:
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)}
    values["blocked_numbers"] = frozenset(n for n in args.blocked_numbers.split(",") if n.strip())
    return Faults(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir = Path(args.state_dir)
    creds = load_or_create(state_dir)
    extra_names = (args.public_host,) if args.public_host else ()
    tls = load_or_create_tls(state_dir / "tls", extra_names) if args.tls else None
    config = EmulatorConfig(sender_ids=DEFAULT_SENDER_IDS | set(args.sender_ids))
    messages_path = state_dir / MESSAGES_FILE
    state = EmulatorState(
        creds, config=config, faults=faults_from_args(args), messages_path=messages_path
    )
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    public = args.public_host or ("127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host)
    base_url = f"{'https' if tls else 'http'}://{public}:{port}/platform_api"
    conn = {"conn_type": "voximplant", "host": base_url, "password": creds.to_json()}
    print(f"voxsms-emulator: serving the Management API at {base_url}", flush=True)
    print(f"credentials: {state_dir.resolve() / 'credentials.json'}", flush=True)
    senders = ", ".join(sorted(config.sender_ids))
    print(f"accepted SenderIDs (src_number): {senders} (add one with --sender-id)", flush=True)
    kept = f", {len(state.messages)} kept from earlier runs" if state.messages else ""
    print(
        f"accepted messages: {messages_path.resolve()}{kept}; "
        f"{base_url.removesuffix('/platform_api')}/_emulator/messages",
        flush=True,
    )
    if tls:
        print(f"trust this CA (REQUESTS_CA_BUNDLE): {tls.ca_path.resolve()}", flush=True)
    print(f"AIRFLOW_CONN_VOXIMPLANT_DEFAULT='{json.dumps(conn)}'", flush=True)
    try:
        uvicorn_server(state, tls).run(sockets=[sock])  # handles SIGINT/SIGTERM itself
    finally:
        if state.message_log is not None:
            state.message_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
