"""Run DAGs defined in tests with ``dag.test()``, and read their XComs (no env changes here)."""

from __future__ import annotations

import os


def run_dag_once(dag, **test_kwargs) -> dict:
    """Run a DAG defined outside the dags folder with ``dag.test()``.

    ``dag.test()`` only runs DAGs it finds serialized in the metadata DB, so the DAG is first
    written there as if the dag-processor had parsed it. A fixed logical date and run_after
    give a fixed run_id, so running the same DAG again re-runs (clears) the same DAG run.
    Returns {task_id, or (task_id, map_index) for mapped ones: TaskInstance}.
    """
    from datetime import UTC, datetime

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    test_kwargs.setdefault("logical_date", datetime(2026, 1, 1, tzinfo=UTC))
    test_kwargs.setdefault("run_after", test_kwargs["logical_date"])
    dag_run = dag.test(**test_kwargs)
    tis = {}
    for ti in dag_run.get_task_instances():
        tis[ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)] = ti
    return tis


def xcom(ti, key: str = "return_value"):
    """An XCom of a finished task instance, deserialized as a downstream task would see it."""
    from airflow.sdk.serde import deserialize

    return deserialize(ti.xcom_pull(task_ids=ti.task_id, key=key, map_indexes=ti.map_index))
