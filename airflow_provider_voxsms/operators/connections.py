"""The connections a task names, looked up before it sends anything."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException


def check_connections(**conn_ids: str | bool | None) -> None:
    """Fail the task, without retries, when a ``*_conn_id`` parameter names no connection.

    Called first in ``execute``, so a typo fails before the first request, with the
    parameter's name, instead of Airflow's bare "conn_id isn't defined" part-way (after some
    numbers were sent, or with retries that cannot help). A false value: not used by this run.
    """
    for parameter, conn_id in conn_ids.items():
        if not conn_id:
            continue
        try:
            BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"{parameter}={conn_id!r} names no Airflow connection, so nothing was sent. "
                f"Create it (Admin > Connections, 'airflow connections add {conn_id}', or the "
                f"AIRFLOW_CONN_{conn_id.upper()} environment variable) or correct {parameter}."
            ) from None
