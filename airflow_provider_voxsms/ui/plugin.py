"""The Airflow plugin the provider registers (entry point ``airflow.plugins``).

The api-server mounts :func:`.app.create_app` under ``/voxsms`` and the UI shows two
external views: "SMS campaign", a tab of every task instance (a task that is not an SMS send
says so), and "SMS campaigns" on DAG runs, listing the run's send tasks. The UI fills
``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and ``{MAP_INDEX}`` in the links.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_voxsms.ui.app import create_app

URL_PREFIX = "/voxsms"
_TASK = "dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"


class VoxSmsPlugin(AirflowPlugin):
    name = "voxsms"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "SMS campaign pages"},
    ]
    external_views = [
        {
            "name": "SMS campaign",
            "href": f"{URL_PREFIX}/campaign?{_TASK}",
            "destination": "task_instance",
            "url_route": "sms_campaign",
        },
        {
            "name": "SMS campaigns",
            "href": f"{URL_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "sms_campaigns",
        },
    ]
