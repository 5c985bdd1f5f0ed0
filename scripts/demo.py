"""`make demo`: run the voxsms_campaign example end to end on this machine, no account needed.

An isolated AIRFLOW_HOME (SQLite) under .demo/ (or $VOXSMS_DEMO_DIR), the Voximplant emulator in
the background, the two connections as environment variables, one `airflow dags test` run, then
a report in plain words: what the send task did (its return value, read from Airflow's
database), what the delivery report found (likewise), the numbers that failed and why (the
sms_failed_numbers table), the send ledger in use, and where to look next.

Then the voxsms_personalised_campaign example on tables the demo seeds (voxsms_customers and
voxsms_opt_outs, in the same SQLite file): a personal text per customer, opt-outs never
texted, and only customers whose local time is inside 09:00-20:00 texted now. Which ones that
is depends on the time of day; customers outside their window are deferred (listed in
sms_deferred_numbers), which is a success, not a failure.
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
DEMO = Path(os.environ.get("VOXSMS_DEMO_DIR") or REPO / ".demo").resolve()
AIRFLOW_HOME = DEMO / "airflow"
EMULATOR_STATE = DEMO / "emulator"
FAILED_DB = AIRFLOW_HOME / "voxsms.db"
BLOCKED = "447443332299,447443332298"  # the emulator refuses these (code 509), to show failures
# Accepted numbers ending in 7 (the sample's 447443332217) end FAILED, to show a delivery failure.
DELIVERY_BY_LAST_DIGIT = "7=FAILED"
BIN = Path(sys.executable).parent
DAG_ID = "voxsms_campaign"
RECIPIENTS = REPO / "dags" / "data" / "recipients.csv"  # the DAG's default recipients_path
EXAMPLES = 3  # example numbers shown per reason
PERSONAL_DAG_ID = "voxsms_personalised_campaign"
PERSONAL_LOG = DEMO / "dags-test-personalised.log"
# voxsms_personalised_campaign's tables, seeded again on every run: customers in four time
# zones (London, Berlin, New York, Tokyo) and Australia's several, one without a first name
# (invalid: the text names it), two opted out, written differently in each table. No number
# ends in 7 (the emulator fails those on delivery) or is blocked.
CUSTOMERS = [  # phone, first_name, code
    ("+44 7443 332230", "Ann", "4821"),
    ("07443 332231", "Bo", "0042"),
    ("+44 7443 332232", "", "5150"),
    ("+44 7443 332233", "Cy", "3141"),
    ("+49 151 23456780", "Dora", "7710"),
    ("+33 6 12 34 56 70", "Fay", "2222"),
    ("+1 212 555 0142", "Gus", "3333"),
    ("+81 90 1234 5670", "Hana", "4444"),
    ("+61 412 345 670", "Liam", "2718"),
]
OPT_OUTS = ["07443 332233", "0033 6 12 34 56 70"]


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
    # Isolated: no Airflow settings or connections from the calling shell (or test session).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
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

    print(
        f"[demo] starting the Voximplant emulator at {origin} (blocked numbers: {BLOCKED}; "
        f"delivery by last digit: {DELIVERY_BY_LAST_DIGIT})"
    )
    with open(DEMO / "emulator.log", "w") as log:
        emulator = subprocess.Popen(
            [BIN / "voxsms-emulator", "--port", str(port), "--state-dir", EMULATOR_STATE]
            + ["--blocked-numbers", BLOCKED]
            + ["--delivery-by-last-digit", DELIVERY_BY_LAST_DIGIT],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    seed_customers()
    try:
        wait_until_up(f"{origin}/_emulator/health")
        post(f"{origin}/_emulator/reset")  # this run's messages only (the state dir keeps them)
        ran = dags_test(DAG_ID, DEMO / "dags-test.log", env)
        messages = emulator_messages(origin)
        ok = report(messages) and ran
        ran = dags_test(PERSONAL_DAG_ID, PERSONAL_LOG, env)
        seen = {message["message_id"] for message in messages}
        new = [m for m in emulator_messages(origin) if m["message_id"] not in seen]
        personal_ok = report_personalised(new) and ran
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    (DEMO / "connections.env").write_text(
        "".join(
            f"export {name}='{env[name]}'\n"
            for name in ("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", "AIRFLOW_CONN_VOXSMS_DB")
        )
    )
    restart = (
        f"{show(BIN / 'voxsms-emulator')} --port {port} --state-dir {show(EMULATOR_STATE)} "
        f"--blocked-numbers {BLOCKED} --delivery-by-last-digit {DELIVERY_BY_LAST_DIGIT}"
    )
    print(
        f"\nWhere to look next:\n"
        f"  the run log:         {show(DEMO / 'dags-test.log')}\n"
        f"  failed numbers:      sqlite3 {show(FAILED_DB)} 'select * from sms_failed_numbers'\n"
        f"  delivery statuses:   sqlite3 {show(FAILED_DB)} 'select * from sms_delivery_status'\n"
        f"  the emulator's messages (it was stopped; they are kept in its state dir):\n"
        f"                       {show(EMULATOR_STATE / 'messages.jsonl')} (one line per request)\n"
        f"                       or start it again, as the demo ran it (same port, credentials "
        f"and faults):\n"
        f"                       {restart}\n"
        f"                       and open {origin}/_emulator/messages\n"
        f"  the Airflow UI:      first start the emulator again (command above; the connection "
        f"sends to it, so a run\n"
        f"                       from the UI fails without it), then in another shell:\n"
        f"                       source {show(DEMO / 'connections.env')} && "
        f"AIRFLOW_HOME={AIRFLOW_HOME} AIRFLOW__CORE__DAGS_FOLDER={REPO / 'dags'} "
        f"{show(BIN / 'airflow')} standalone\n"
        f"  the personalised run:\n"
        f"    its log:           {show(PERSONAL_LOG)}\n"
        f"    deferred numbers:  sqlite3 {show(FAILED_DB)} 'select * from sms_deferred_numbers'\n"
        f"    its customers:     sqlite3 {show(FAILED_DB)} 'select * from voxsms_customers' "
        "(opt-outs: voxsms_opt_outs)"
    )
    if not ok:
        raise SystemExit(f"[demo] the DAG run failed; see {show(DEMO / 'dags-test.log')}")
    if not personal_ok:
        raise SystemExit(f"[demo] the {PERSONAL_DAG_ID} run failed; see {show(PERSONAL_LOG)}")


def seed_customers() -> None:
    """voxsms_personalised_campaign's tables in the demo's SQLite file, as CUSTOMERS and OPT_OUTS
    say (made again on every run)."""
    with sqlite3.connect(FAILED_DB) as db:
        db.execute("drop table if exists voxsms_customers")
        db.execute("drop table if exists voxsms_opt_outs")
        db.execute("create table voxsms_customers (phone text, first_name text, code text)")
        db.execute("create table voxsms_opt_outs (phone text)")
        db.executemany("insert into voxsms_customers values (?, ?, ?)", CUSTOMERS)
        db.executemany("insert into voxsms_opt_outs values (?)", [(n,) for n in OPT_OUTS])
    print(
        f"[demo] seeded {len(CUSTOMERS)} customers and {len(OPT_OUTS)} opt-outs (tables "
        f"voxsms_customers, voxsms_opt_outs in {show(FAILED_DB)})"
    )


def dags_test(dag_id: str, log: Path, env: dict) -> bool:
    """One `airflow dags test` run, its output in ``log``; False when it failed."""
    print(f"[demo] running: airflow dags test {dag_id}")
    started = time.monotonic()
    run = subprocess.run(
        [BIN / "airflow", "dags", "test", dag_id],
        env=env,
        capture_output=True,
        text=True,
    )
    log.write_text(run.stdout + run.stderr)
    print(f"[demo] DAG run finished in {time.monotonic() - started:.1f} s")
    return run.returncode == 0 and "state=failed" not in run.stdout + run.stderr


def emulator_messages(origin: str) -> list[dict]:
    with urllib.request.urlopen(f"{origin}/_emulator/messages", timeout=5) as response:
        return json.load(response)


def show(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def post(url: str) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=5).close()


def report(messages: list[dict]) -> bool:
    """Print what the DAG run did, in plain words; False when its send task did not succeed."""
    found = latest_run()
    if found is None:
        print(f"\nNo run of {DAG_ID} was recorded: Airflow failed before it ran; see the run log")
        return False
    run_id, states, summary, delivered = found
    failed = failed_numbers(run_id)
    print(f"\nWhat happened (DAG {DAG_ID}, run {run_id}):")
    print("  tasks: " + ", ".join(f"{task} {state}" for task, state in states.items()))
    if summary is None:
        print("  the send task returned no result: it failed before it finished; see the run log")
    else:
        sent = summary["valid"] - summary["not_sent"] - summary["earlier"]
        print(f"  rows read:     {summary['recipients']} (from {show(RECIPIENTS)})")
        print(f"  invalid:       {summary['invalid']}, never sent" + colon(summary["invalid"]))
        examples(failed, "validation")
        print(
            f"  duplicates:    {summary['duplicates']}, sent once (the same number and text "
            "again, written another way)"
        )
        print(
            f"  sent:          {sent} numbers to the API in {summary['batches']} request(s) of "
            f"at most 100 (the send task took {summary['duration_s']:.2f} s)"
        )
        print(
            f"  accepted:      {summary['accepted']} ({summary['fragments']} SMS fragments); "
            f"the emulator holds {len(messages)} message(s)"
        )
        print(
            f"  failed:        {summary['failed']}, refused by the API" + colon(summary["failed"])
        )
        examples(failed, "api")
        if summary["not_sent"]:
            print(f"  not sent:      {summary['not_sent']}, the API never had them:")
            examples(failed, "not_sent")
        if summary["unknown"]:
            print(f"  unknown:       {summary['unknown']}, no answer and not in the history")
        if summary["earlier"] or summary["reconciled"] or summary["resent"]:
            print(
                f"  retries:       {summary['earlier']} settled by an earlier try, "
                f"{summary['reconciled']} found in the history, {summary['resent']} sent again"
            )
    if delivered is None:
        print("  the delivery report returned no result: it did not finish; see the run log")
    else:
        undelivered = delivered["messages"] - delivered["delivered"] - delivered["pending"]
        pending = f", still pending: {delivered['pending']}" if delivered["pending"] else ""
        print(
            f"  delivered:     {delivered['delivered']}, failed on delivery: {undelivered}"
            f"{pending} (of {delivered['messages']} followed)" + colon(undelivered)
        )
        examples(failed, "delivery")
    print(
        f"  logged:        {len(failed)} row(s) in table sms_failed_numbers (connection voxsms_db)"
    )
    print(f"                 {delivery_statuses(run_id)} row(s) in table sms_delivery_status")
    print(f"  the ledger:    connection voxsms_db (SQLite file {show(FAILED_DB)}),")
    print(f"                 {ledger_tables()}")
    print("                 a retry or a cleared send task of this run sends nothing twice")
    return (
        summary is not None
        and states.get("send") == "success"
        and states.get("delivery") == "success"
    )


def colon(count: int) -> str:
    return ", e.g.:" if count else ""


def latest_run(dag_id: str = DAG_ID) -> tuple[str, dict[str, str], dict | None, dict | None] | None:
    """The newest run of the DAG: its id, its task states and the return values of the send
    and delivery tasks."""
    with sqlite3.connect(AIRFLOW_HOME / "airflow.db") as db:
        row = db.execute(
            "select id, run_id from dag_run where dag_id = ? order by id desc limit 1", (dag_id,)
        ).fetchone()
        if row is None:
            return None
        dag_run_id, run_id = row
        states = dict(
            db.execute(
                "select task_id, state from task_instance where dag_id = ? and run_id = ? "
                "order by start_date",
                (dag_id, run_id),
            ).fetchall()
        )
        values = {}
        for task_id in ("send", "delivery"):
            value = db.execute(
                "select value from xcom where dag_run_id = ? and task_id = ? "
                "and key = 'return_value'",
                (dag_run_id, task_id),
            ).fetchone()
            values[task_id] = json.loads(value[0]) if value else None
    return run_id, states, values["send"], values["delivery"]


def delivery_statuses(run_id: str, dag_id: str = DAG_ID) -> int:
    """The run's rows in sms_delivery_status (0 when the table does not exist yet)."""
    with sqlite3.connect(FAILED_DB) as db:
        try:
            (count,) = db.execute(
                "select count(*) from sms_delivery_status where dag_id = ? and run_id = ?",
                (dag_id, run_id),
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return count


def failed_numbers(
    run_id: str, dag_id: str = DAG_ID, table: str = "sms_failed_numbers"
) -> list[dict]:
    """The run's rows of sms_failed_numbers, or of another table of numbers with the same
    task key and a destination_number (empty when the table does not exist yet)."""
    with sqlite3.connect(FAILED_DB) as db:
        db.row_factory = sqlite3.Row
        order = "stage, destination_number" if table == "sms_failed_numbers" else "rowid"
        try:
            rows = db.execute(
                f"select * from {table} where dag_id = ? and run_id = ? order by {order}",
                (dag_id, run_id),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [dict(row) for row in rows]


def report_personalised(messages: list[dict]) -> bool:
    """Print what the voxsms_personalised_campaign run did; False when its send task or
    delivery report did not succeed. ``messages``: what the emulator accepted in this run."""
    found = latest_run(PERSONAL_DAG_ID)
    if found is None:
        print(f"\nNo run of {PERSONAL_DAG_ID} was recorded: Airflow failed before it ran")
        return False
    run_id, states, summary, delivered = found
    failed = failed_numbers(run_id, PERSONAL_DAG_ID)
    deferred = failed_numbers(run_id, PERSONAL_DAG_ID, "sms_deferred_numbers")
    print(f"\nWhat happened (DAG {PERSONAL_DAG_ID}, run {run_id}):")
    print("  tasks: " + ", ".join(f"{task} {state}" for task, state in states.items()))
    if summary is None:
        print("  the send task returned no result: it failed before it finished; see its log")
        return False
    sent = (
        summary["valid"]
        - summary["suppressed"]
        - summary["outside_window"]
        - summary["not_sent"]
        - summary["earlier"]
    )
    print(
        f"  rows read:     {summary['recipients']} (from table voxsms_customers), each with "
        "its own text: 'Hi {first_name}, your code is {code}.'"
    )
    print(f"  invalid:       {summary['invalid']}, never sent" + colon(summary["invalid"]))
    examples(failed, "validation")
    print(
        f"  suppressed:    {summary['suppressed']}, opted out (table voxsms_opt_outs, "
        "however either table writes the number), never sent"
    )
    print(
        f"  outside window: {summary['outside_window']}, not sent now: outside 09:00-20:00 in "
        "their own time zone (a later run can text them)" + colon(summary["outside_window"])
    )
    for row in deferred[:EXAMPLES]:
        opens = row["next_window_start"] or "never (its zones never share the window)"
        print(
            f"                 {row['destination_number']!r} ({row['time_zone']}) - opens {opens} UTC"
        )
    if len(deferred) > EXAMPLES:
        print(f"                 and {len(deferred) - EXAMPLES} more")
    print(
        f"  sent:          {sent} numbers to the API, {summary['distinct_texts']} distinct "
        f"text(s); accepted {summary['accepted']}, failed {summary['failed']}"
        + colon(len(messages))
    )
    for message in sorted(messages, key=lambda m: m["message_id"])[:EXAMPLES]:
        print(f"                 {message['destination_number']!r}: {message['text']!r}")
    examples(failed, "api")
    if summary["not_sent"] or summary["unknown"]:
        print(f"  not sent:      {summary['not_sent']}; unknown: {summary['unknown']}")
    if delivered is not None:
        undelivered = delivered["messages"] - delivered["delivered"] - delivered["pending"]
        print(
            f"  delivered:     {delivered['delivered']}, failed on delivery: {undelivered} "
            f"(of {delivered['messages']} followed)"
        )
    else:
        print("  the delivery report returned no result: it did not finish; see its log")
    print(
        f"  logged:        {len(failed)} row(s) in table sms_failed_numbers, {len(deferred)} "
        "row(s) in table sms_deferred_numbers"
    )
    return states.get("send") == "success" and states.get("delivery") == "success"


def examples(failed: list[dict], stage: str) -> None:
    """A few numbers of one stage, by reason: as the input wrote them when they were invalid."""
    reasons: dict[str, list[str]] = {}
    for row in failed:
        if row["stage"] == stage:
            code = f"{row['error_code']} " if row["error_code"] is not None else ""
            number = row["destination_number"] or ""
            if stage == "validation":
                number = row.get("input_number") or number
            reason = f"{code}{row['error_description']}"
            reasons.setdefault(reason, []).append(repr(number) + ("" if number else " (blank)"))
    for reason, numbers in reasons.items():
        more = f" and {len(numbers) - EXAMPLES} more" if len(numbers) > EXAMPLES else ""
        print(f"                 {', '.join(numbers[:EXAMPLES])}{more} - {reason}")


def ledger_tables() -> str:
    """The send ledger's tables in the voxsms_db database."""
    with sqlite3.connect(FAILED_DB) as db:
        names = sorted(
            name
            for (name,) in db.execute("select name from sqlite_master where type = 'table'")
            if name.endswith(("_leases", "_claims", "_outcomes"))
        )
    return "tables " + ", ".join(names) if names else "no tables yet"


if __name__ == "__main__":
    main()
