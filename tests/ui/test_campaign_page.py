"""The SMS campaign page (ui/, the provider's Airflow plugin) in Airflow's own UI.

A finished ``voxsms_campaign`` run (``airflow dags test`` against the emulator, in the UI's own
metadata database, its tables on a SQLite connection created through the REST API): the tab on
the send task, the page's funnel, delivery chart and failed-numbers table, its counts against
the task's return value, the CSV against the run's ``sms_failed_numbers`` rows. Then access
control on a second api-server over the same database with the simple auth manager's users: a
viewer reads the page and its JSON, a user with no role gets 403, no token 401.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AirflowUI, _airflow_env, _free_port, _stop, _wait_healthy

pytestmark = pytest.mark.ui

BLOCKED = {"447443332299", "447443332298"}
FAILED_ON_DELIVERY = "7=FAILED,8=EXPIRED"
COUNTS = ("recipients", "accepted", "failed", "not_sent", "unknown", "invalid", "duplicates")


def expect(locator):
    from playwright.sync_api import expect

    return expect(locator)


@dataclass
class CampaignRun:
    run_id: str
    summary: dict
    report: dict
    db: Path

    def query(self, task_id: str = "send", **extra) -> str:
        params = {"dag_id": "voxsms_campaign", "run_id": self.run_id, "task_id": task_id}
        return urllib.parse.urlencode({**params, "map_index": -1, **extra})

    def failed_rows(self) -> list[tuple[str, str]]:
        """The run's rows of sms_failed_numbers (the DAG's log_failed wrote them)."""
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                "SELECT stage, destination_number FROM sms_failed_numbers WHERE run_id = ?",
                (self.run_id,),
            ).fetchall()


@pytest.fixture(scope="module")
def campaign_run(airflow_ui: AirflowUI, _voximplant_emulator_session) -> CampaignRun:
    emulator = _voximplant_emulator_session
    emulator.state.reset()
    emulator.state.set_faults(
        blocked_numbers=BLOCKED,
        delivery_queued_s=0.5,
        delivery_dispatched_s=0.5,
        delivery_by_last_digit=FAILED_ON_DELIVERY,
    )
    db = airflow_ui.home / "voxsms.db"
    status, answer = airflow_ui.api(
        "POST",
        "/api/v2/connections",
        {"connection_id": "voxsms_db", "conn_type": "sqlite", "host": str(db)},
    )
    assert status == 201, answer
    env = _airflow_env(airflow_ui.home)
    env["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"] = emulator.connection_json()
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "voxsms_campaign"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status, runs = airflow_ui.api("GET", "/api/v2/dags/voxsms_campaign/dagRuns")
    assert status == 200 and runs["dag_runs"], runs
    (run,) = runs["dag_runs"]
    assert run["state"] == "success", run
    run_id = run["dag_run_id"]
    values = {}
    for task_id in ("send", "delivery"):
        path = (
            f"/api/v2/dags/voxsms_campaign/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/"
            f"{task_id}/xcomEntries/return_value"
        )
        status, entry = airflow_ui.api("GET", path)
        assert status == 200, entry
        value = entry["value"]
        values[task_id] = json.loads(value) if isinstance(value, str) else value
    return CampaignRun(run_id, values["send"], values["delivery"], db)


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def test_the_tab_appears_on_a_send_task_and_shows_the_campaign(
    page, airflow_ui, campaign_run, screenshot
):
    run = urllib.parse.quote(campaign_run.run_id, safe="")
    page.goto(f"{airflow_ui.url}/dags/voxsms_campaign/runs/{run}/tasks/send")
    tab = page.get_by_role("tab", name="SMS campaign").or_(
        page.get_by_role("link", name="SMS campaign")
    )
    expect(tab.first).to_be_visible()
    tab.first.click()
    frame = page.frame_locator("iframe").first
    expect(frame.locator("#funnel svg")).to_be_visible()
    expect(frame.locator("#failed-table")).to_be_visible()
    screenshot("10-campaign-tab-on-send-task")


def test_the_page_shows_funnel_delivery_chart_and_failed_numbers_with_the_tasks_counts(
    page, airflow_ui, campaign_run, screenshot
):
    page.goto(f"{airflow_ui.url}/voxsms/campaign?{campaign_run.query()}")
    summary, report = campaign_run.summary, campaign_run.report
    expect(page.locator("#funnel svg rect")).to_have_count(5)
    for key in ("accepted", "failed", "not_sent", "unknown", "invalid", "duplicates"):
        cell = page.locator(f'td[data-outcome="{key}"]')
        assert number(cell.inner_text()) == summary[key], key
    assert number(page.locator('[data-count="recipients"]').inner_text()) == summary["recipients"]
    expect(page.locator("#identity")).to_contain_text("adds up")
    expect(page.locator("#identity")).to_contain_text("matches the task's return value")
    expect(page.locator("#delivery-chart svg path.curve")).to_be_visible()
    expect(page.locator("#delivery-statuses")).to_contain_text(f"{report['delivered']:,}")
    funnel = page.locator("#funnel svg").text_content()
    assert f"{report['delivered']:,}" in funnel and f"{summary['accepted']:,}" in funnel
    rows = page.locator("#failed-table tbody tr")
    expect(rows).to_have_count(len(campaign_run.failed_rows()))
    expect(rows.first).to_contain_text("******")  # masked by default
    screenshot("11-campaign-page")

    page.get_by_label("Stage").select_option("api")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(len(BLOCKED))
    page.locator("#mask-toggle").click()
    assert {r.split("\t")[1] for r in rows.all_inner_texts()} == BLOCKED
    screenshot("12-campaign-page-api-failures-unmasked")


def test_the_csv_has_one_row_per_failed_number(page, airflow_ui, campaign_run):
    page.goto(f"{airflow_ui.url}/voxsms/campaign?{campaign_run.query(numbers='full')}")
    with page.expect_download() as download:
        page.locator("#csv-link").click()
    text = Path(download.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    logged = campaign_run.failed_rows()
    assert len(rows) == len(logged) > 0
    assert sorted((r["stage"], r["destination_number"]) for r in rows) == sorted(
        (stage, number or "") for stage, number in logged
    )


def test_the_json_has_the_pages_counts(airflow_ui, campaign_run):
    status, view = airflow_ui.api("GET", f"/voxsms/api/campaign?{campaign_run.query()}")
    assert status == 200, view
    assert view["summary"] == campaign_run.summary
    assert {k: view["outcomes"][k] for k in COUNTS[1:]} == {
        k: campaign_run.summary[k] for k in COUNTS[1:]
    }
    assert view["delivery"]["statuses"]["DELIVERED"] == campaign_run.report["delivered"]
    assert view["identity"]["holds"] and view["identity"]["matches_return_value"]
    assert view["failed"]["send"] + view["failed"]["delivery"] == len(campaign_run.failed_rows())

    status, page = airflow_ui.api("GET", f"/voxsms/api/failed?{campaign_run.query(stage='api')}")
    assert status == 200, page
    assert page["total"] == len(BLOCKED) and page["numbers"] == "masked"
    assert {r["destination_number"] for r in page["rows"]} == {"+44 ******** 98", "+44 ******** 99"}
    query = campaign_run.query(stage="api", numbers="full")
    status, page = airflow_ui.api("GET", f"/voxsms/api/failed?{query}")
    assert {r["destination_number"] for r in page["rows"]} == BLOCKED


def test_a_task_that_is_not_an_sms_send_says_so(page, airflow_ui, campaign_run, screenshot):
    page.goto(f"{airflow_ui.url}/voxsms/campaign?{campaign_run.query('extract')}")
    expect(page.locator("#not-sms")).to_contain_text("Not an SMS send task")
    status, answer = airflow_ui.api("GET", f"/voxsms/api/campaign?{campaign_run.query('extract')}")
    assert status == 404 and "not an SMS send task" in answer["detail"]
    screenshot("13-not-an-sms-task")


def test_the_dag_run_tab_lists_the_runs_send_tasks(page, airflow_ui, campaign_run, screenshot):
    run = urllib.parse.quote(campaign_run.run_id, safe="")
    page.goto(f"{airflow_ui.url}/dags/voxsms_campaign/runs/{run}")
    tab = page.get_by_role("tab", name="SMS campaigns").or_(
        page.get_by_role("link", name="SMS campaigns")
    )
    tab.first.click()
    table = page.frame_locator("iframe").first.locator("#run-tasks")
    expect(table).to_contain_text("send")
    expect(table).to_contain_text(f"{campaign_run.summary['accepted']:,}")
    screenshot("14-sms-campaigns-on-dag-run")


# -- access control: the simple auth manager with two users -------------------------------------

USERS = {"reader": "viewer", "outsider": ""}  # a user with no role may read no DAG
PASSWORDS = {"reader": "reader-pass", "outsider": "outsider-pass"}


@pytest.fixture(scope="module")
def secured_url(airflow_ui: AirflowUI, campaign_run):
    """A second api-server on the same database, with users instead of everyone admin."""
    home = airflow_ui.home
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = _airflow_env(home)
    env.update(
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u}:{r}" for u, r in USERS.items()),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
    )
    port = _free_port()
    log = home / "api-server-secured.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1"]
            + ["--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server, log)
        yield url
    finally:
        _stop(server)


def token(url: str, user: str) -> str:
    body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
    request = urllib.request.Request(
        url + "/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def status_of(url: str, bearer: str | None) -> int:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30):
            return 200
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize(
    "path", ["/voxsms/api/campaign", "/voxsms/campaign", "/voxsms/campaign.csv"]
)
def test_only_users_who_may_read_the_dag_see_the_page_or_its_json(secured_url, campaign_run, path):
    url = f"{secured_url}{path}?{campaign_run.query()}"
    reader, outsider = token(secured_url, "reader"), token(secured_url, "outsider")
    assert status_of(url, reader) == 200
    assert status_of(url, outsider) == 403
    assert status_of(url, None) == 401
    run_page = f"{secured_url}/voxsms/run?{re.sub(r'&task_id=[^&]*', '', campaign_run.query())}"
    assert (status_of(run_page, reader), status_of(run_page, outsider)) == (200, 403)
