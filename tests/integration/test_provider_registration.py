"""The provider is discovered by Airflow's own CLI through the apache_airflow_provider entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def airflow_cli(*args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli() -> dict[str, list[dict]]:
    return {command: airflow_cli("providers", command) for command in ("list", "hooks", "widgets")}


def test_providers_list_shows_the_package(cli):
    packages = {row["package_name"]: row for row in cli["list"]}
    assert packages["airflow-provider-voxsms"]["version"] == "0.1.0"


def test_providers_hooks_shows_the_connection_type(cli):
    (row,) = [row for row in cli["hooks"] if row["connection_type"] == "voximplant"]
    assert row["class"] == "airflow_provider_voxsms.hooks.voximplant.VoximplantHook"
    assert row["conn_id_attribute_name"] == "voximplant_conn_id"
    assert row["hook_name"] == "Voximplant"


def test_connection_form_fields_are_registered(cli):
    fields = {
        row["connection_parameter_name"]
        for row in cli["widgets"]
        if row["package_name"] == "airflow-provider-voxsms"
    }
    assert fields == {
        "extra__voximplant__credentials_path",
        "extra__voximplant__timeout",
        "extra__voximplant__ca_bundle",
        "extra__voximplant__account_id",
    }


def test_every_extra_field_is_optional(cli):
    """Airflow's form makes a field whose type lacks "null" required: Save stays disabled until
    it is filled in (seen in the browser, tests/ui/), and none of ours is needed."""
    types = {
        row["connection_parameter_name"]: row["field_type"]
        for row in cli["widgets"]
        if row["package_name"] == "airflow-provider-voxsms"
    }
    assert all("null" in field_type for field_type in types.values()), types
