"""The one place that reaches past Airflow's public interfaces, for what differs by version.

Everything else in the provider uses ``airflow.sdk`` and the providers' public hooks only.
"""

from __future__ import annotations

from typing import Any


def dataframe_xcoms_unsupported() -> str | None:
    """Why this Airflow cannot store pandas DataFrames as XComs, or None when it can.

    Airflow 3.2's serialiser predates pandas 3, which renamed DataFrame's module. There is no
    public way to ask, so this resolves the configured XCom backend (``execution_time``, an
    internal module) and, when it is Airflow's own, serialises a one-row frame. A custom
    backend that serialises values itself is trusted to cope.
    """
    import pandas as pd
    from airflow.sdk.bases.xcom import BaseXCom
    from airflow.sdk.execution_time.xcom import resolve_xcom_backend
    from airflow.sdk.serde import serialize

    if resolve_xcom_backend().serialize_value is not BaseXCom.serialize_value:
        return None
    try:
        serialize(pd.DataFrame({"destination_number": ["0"]}))
    except TypeError as err:
        return f"This Airflow cannot store pandas {pd.__version__} DataFrames as XComs ({err})"
    return None


async def read_xcom(*, dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    """One XCom's value, from a trigger, through the configured XCom backend.

    Triggers have no task context, so this uses the backend ``execution_time`` resolves (an
    internal module) and its sync ``get_one`` in a thread: Airflow 3.2 has no async getter, and
    the sync one works in the triggerer and in ``dag.test()``'s inline triggers alike.
    """
    import asyncio

    from airflow.sdk.execution_time.xcom import XCom

    return await asyncio.to_thread(
        XCom.get_one, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, key=key
    )
