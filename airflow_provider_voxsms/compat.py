"""The one place that reaches past Airflow's public interfaces, for what differs by version.

Everything else in the provider uses ``airflow.sdk`` and the providers' public hooks only.
"""

from __future__ import annotations


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
