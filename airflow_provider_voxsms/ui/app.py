"""The FastAPI app the api-server mounts under ``/voxsms`` (see :mod:`.plugin`).

``GET /campaign`` (the page) and ``/api/campaign`` (its JSON) for one task instance;
``/api/failed`` and ``/campaign.csv`` for its failed numbers; ``/run`` lists a DAG run's send
tasks. Plugin endpoints are not protected by Airflow unless they ask: every route depends on
Airflow's own ``requires_access_dag("GET", TASK_INSTANCE)``, which reads the caller's token
(the UI's cookie or a bearer token) and asks the configured auth manager about ``dag_id``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from airflow_provider_voxsms.ui import charts, failed, failed_rows, locate
from airflow_provider_voxsms.ui.campaign import campaign_view
from airflow_provider_voxsms.ui.failed_rows import FailedFilter
from airflow_provider_voxsms.ui.locate import TaskKey

log = logging.getLogger(__name__)
WAIT_FOR_READER_S = 60.0  # a CSV whose reader takes no chunk for this long is abandoned
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.globals["charts"] = charts


def _can_read_task_instances():
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)


def task_key(
    dag_id: str, run_id: str, task_id: str, map_index: Annotated[str, Query()] = "-1"
) -> TaskKey:
    """The task instance a request names; a map index the UI left unfilled means -1."""
    try:
        index = int(map_index)
    except ValueError:
        index = -1
    return TaskKey(dag_id, run_id, task_id, index)


def failed_filter(
    stage: str | None = None, code: str | None = None, number: str | None = None
) -> FailedFilter:
    return FailedFilter(stage or None, (code or "").strip() or None, (number or "").strip() or None)


Key = Annotated[TaskKey, Depends(task_key)]
Filter = Annotated[FailedFilter, Depends(failed_filter)]


def create_app() -> FastAPI:
    app = FastAPI(
        title="SMS campaigns (airflow-provider-voxsms)",
        dependencies=[Depends(_can_read_task_instances())],
    )

    @app.get("/api/campaign")
    def campaign_json(key: Key) -> dict:
        """What the page shows, as JSON (the same counts as the tasks' return values)."""
        with ExitStack() as stack:
            return _view(key, stack)[0]

    @app.get("/api/failed")
    def failed_json(key: Key, where: Filter, page: int = 1, numbers: str = "masked") -> dict:
        """One page of failed numbers (``PAGE_ROWS`` a page), filtered."""
        with ExitStack() as stack:
            rows = _rows(key, stack)
            return _failed_page(rows, where, page, numbers == "full")

    @app.get("/campaign.csv")
    def failed_csv(key: Key, where: Filter, numbers: str = "masked") -> StreamingResponse:
        """Every failed number that matches the filter, as CSV, streamed."""
        _view_allowed(_task(key))
        name = f"{key.dag_id}.{key.task_id}.failed_numbers.csv"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        lines = _in_one_thread(lambda: _csv_lines(key, where, numbers == "full"))
        return StreamingResponse(lines, media_type="text/csv", headers=headers)

    @app.get("/campaign", response_class=HTMLResponse)
    def campaign_page(
        request: Request, key: Key, where: Filter, page: int = 1, numbers: str = "masked"
    ):
        task = _task(key)
        context = {"request": request, "task": task, "key": key}
        if task["operator"] not in locate.SEND_OPERATORS:
            report_of = _send_of_report(key) if _is_report(task) else None
            return TEMPLATES.TemplateResponse(
                request, "not_sms.html", {**context, "send_task": report_of}
            )
        full = numbers == "full"
        with ExitStack() as stack:
            view, rows = _view(key, stack, task)
            table = _failed_page(rows, where, page, full)
        params = {
            "dag_id": key.dag_id,
            "run_id": key.run_id,
            "task_id": key.task_id,
            "map_index": key.map_index,
        }
        filters = {k: v for k, v in vars(where).items() if v}
        return TEMPLATES.TemplateResponse(
            request,
            "campaign.html",
            {
                **context,
                "view": view,
                "table": table,
                "full": full,
                "filters": filters,
                "query": lambda **extra: urlencode(
                    {**params, **filters, "numbers": numbers, **extra}
                ),
            },
        )

    @app.get("/run", response_class=HTMLResponse)
    def run_page(request: Request, dag_id: str, run_id: str):
        from airflow.utils.session import create_session

        with create_session() as session:
            tasks = locate.send_tasks(session, dag_id, run_id)
        return TEMPLATES.TemplateResponse(
            request, "run.html", {"dag_id": dag_id, "run_id": run_id, "tasks": tasks}
        )

    return app


def _task(key: TaskKey) -> dict:
    from airflow.utils.session import create_session

    with create_session() as session:
        task = locate.task_instance(session, key)
    if task is None:
        raise HTTPException(404, f"No task instance {key}")
    return task


def _is_report(task: dict) -> bool:
    return task["operator"] in locate.REPORT_OPERATORS


def _send_of_report(key: TaskKey) -> str | None:
    """The send task of the same run (and group) a delivery report follows, to link to it."""
    from airflow.utils.session import create_session

    with create_session() as session:
        sends = locate.send_tasks(session, key.dag_id, key.run_id)
    group = key.task_id.rpartition(".")[0]
    names = [t["task_id"] for t in sends if t["map_index"] == key.map_index]
    same = [n for n in names if n.rpartition(".")[0] == group]
    return (same or names or [None])[0]


def _rows(key: TaskKey, stack: ExitStack):
    from airflow.utils.session import create_session

    with create_session() as session:
        report = locate.report_task(session, key)
        return locate.campaign_rows(session, key, report, stack)


def _view_allowed(task: dict) -> None:
    """404 for a task that is not an SMS send."""
    if task["operator"] not in locate.SEND_OPERATORS:
        raise HTTPException(
            404,
            f"Task {task['task_id']!r} is a {task['operator']}, not an SMS send task "
            f"({', '.join(sorted(locate.SEND_OPERATORS))}): it has no campaign.",
        )


def _view(key: TaskKey, stack: ExitStack, task: dict | None = None):
    """The campaign's view and its open rows (closed with ``stack``)."""
    task = task or _task(key)
    _view_allowed(task)
    rows = _rows(key, stack)
    return campaign_view(task, rows), rows


def _failed_page(rows, where: FailedFilter, page: int, full: bool) -> dict:
    page = max(1, page)
    counts = failed_rows.failed_count(rows.outcomes, rows.statuses, where)
    total = sum(counts.values())
    found = failed_rows.failed_page(
        rows.outcomes,
        rows.statuses,
        where,
        offset=(page - 1) * failed.PAGE_ROWS,
        limit=failed.PAGE_ROWS,
        counts=counts,
    )
    return {
        "total": total,
        "page": page,
        "pages": max(1, -(-total // failed.PAGE_ROWS)),
        "page_rows": failed.PAGE_ROWS,
        "numbers": "full" if full else "masked",
        "rows": [failed.shown(row, full) for row in found],
    }


def _csv_lines(key: TaskKey, where: FailedFilter, full: bool) -> Iterator[str]:
    with ExitStack() as stack:
        rows = _rows(key, stack)
        found = failed_rows.failed_blocks(rows.outcomes, rows.statuses, where)
        yield from failed.csv_lines(found, full)


def _in_one_thread(make: Callable[[], Iterator[str]], ahead: int = 8) -> Iterator[str]:
    """``make()``'s items, produced in one thread of their own: a DB-API connection (sqlite3's
    above all) stays in the thread that opened it, while Starlette may pull each item of a
    streamed response from another thread of its pool."""
    chunks: queue.Queue = queue.Queue(maxsize=ahead)
    done = object()

    def produce() -> None:
        try:
            for chunk in make():
                chunks.put(chunk, timeout=WAIT_FOR_READER_S)
        except queue.Full:  # the client went away: close the connection, end the thread
            return
        except Exception:
            log.exception("Writing the failed numbers' CSV failed; the download is cut short")
        with contextlib.suppress(queue.Full):
            chunks.put(done, timeout=WAIT_FOR_READER_S)

    threading.Thread(target=produce, name="voxsms-csv", daemon=True).start()
    while (chunk := chunks.get()) is not done:
        yield chunk
