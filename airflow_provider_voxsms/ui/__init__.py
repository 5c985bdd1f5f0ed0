"""The campaign page: one send task's funnel, reasons, delivery curve and failed numbers.

Served by Airflow's api-server as a plugin (:mod:`.plugin`): a FastAPI app under ``/voxsms``
(:mod:`.app`) and an "SMS campaign" tab on task instances and DAG runs. What the page shows is
one JSON document (:func:`.campaign.campaign_view`), aggregated in SQL over the tables the
tasks wrote (:mod:`.queries`), or over their XComs loaded into an in-memory SQLite table
(:mod:`.xcom_tables`), so both paths share one set of queries.
"""
