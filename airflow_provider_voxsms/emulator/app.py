"""The HTTP face of the emulator: Management API routes plus ``/_emulator`` introspection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_voxsms.emulator import errors
from airflow_provider_voxsms.emulator.errors import ApiError
from airflow_provider_voxsms.emulator.methods import METHODS, Call
from airflow_provider_voxsms.emulator.params import Params
from airflow_provider_voxsms.emulator.state import EmulatorState

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
MAX_FIELDS = 1000
_FORM = "application/x-www-form-urlencoded"
_API_VERBS = ("GET", "POST")
_ALL_VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(state: EmulatorState, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """Build the ASGI app serving ``state``; it accepts both request styles of the real API.

    ``POST /platform_api/<Method>`` takes parameters from the query string and/or a form body;
    ``POST /platform_api`` takes ``cmd=<Method>`` in the form body (what official clients send).
    """
    app = FastAPI(
        title="Voximplant Management API emulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.emulator = state

    @app.api_route("/platform_api", methods=_ALL_VERBS, include_in_schema=False)
    @app.api_route("/platform_api/", methods=_ALL_VERBS, include_in_schema=False)
    @app.api_route("/platform_api/{method}", methods=_ALL_VERBS, include_in_schema=False)
    @app.api_route("/platform_api/{method}/", methods=_ALL_VERBS, include_in_schema=False)
    async def platform_api(request: Request, method: str | None = None) -> Response:
        return await _handle(state, request, method, max_body_bytes)

    @app.get("/_emulator/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/_emulator/messages")
    async def messages() -> JSONResponse:
        return JSONResponse(state.messages_snapshot())

    @app.get("/_emulator/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(state.stats_snapshot())

    @app.get("/_emulator/faults")
    async def get_faults() -> JSONResponse:
        return JSONResponse(state.faults.to_dict())

    @app.post("/_emulator/faults")
    async def set_faults(request: Request, replace: bool = False) -> JSONResponse:
        """Patch the faults with the JSON body (``?replace=true``: start from no faults)."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            base = type(state.faults)() if replace else None
            faults = state.set_faults(base, **changes)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": {"code": 400, "msg": str(exc)}}, status_code=400)
        return JSONResponse(faults.to_dict())

    @app.post("/_emulator/reset")
    async def reset() -> dict:
        state.reset()
        return {"ok": True}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": {"code": errors.INVALID_ARGUMENTS, "msg": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code)

    return app


async def _handle(
    state: EmulatorState, request: Request, path_method: str | None, max_body: int
) -> Response:
    """One API call: read params, inject faults, authenticate, dispatch; never raises."""
    authorization = request.headers.get("authorization")
    try:
        values, bad_input = await _read_params(request, max_body), None
    except ApiError as exc:
        values, bad_input = {}, exc
    name = path_method or values.get("cmd")
    state.begin_request(name, authorization)
    api_error = http_status = None
    try:
        faults = state.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.slow_response_s and name == "A2PSendSms":
            await asyncio.sleep(faults.slow_response_s)
        if request.method not in _API_VERBS:
            http_status = 405
            body = {"error": {"code": errors.INVALID_ARGUMENTS, "msg": "Use GET or POST"}}
            return JSONResponse(body, status_code=405, headers={"Allow": "GET, POST"})
        if name == "A2PSendSms" and state.take_503_burst():
            http_status = 503
            return PlainTextResponse("503 Service Temporarily Unavailable", status_code=503)
        if state.roll(faults.http_429_rate):
            http_status = 429
            headers = {"Retry-After": str(faults.retry_after_s)}
            return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)
        if state.roll(faults.http_503_rate):
            http_status = 503
            return PlainTextResponse("503 Service Temporarily Unavailable", status_code=503)
        account_id = state.verifier.verify(authorization)
        if bad_input is not None:
            raise bad_input
        handler = METHODS.get(name or "")
        if handler is None:
            raise ApiError(errors.INVALID_ARGUMENTS, f"Unknown method: {name!r}")
        if state.roll(faults.error_340_rate):
            raise ApiError(errors.RATE_LIMIT, "Rate limit exceeded")
        if state.roll(faults.error_416_rate):
            raise ApiError(errors.RETRY_LATER, f"Repeat after {faults.retry_after_s} seconds")
        if name == "A2PSendSms" and state.roll(faults.reset_connection_rate):
            http_status = 0
            return _BrokenResponse()
        result = handler(Call(state, Params(values), account_id, _base_url(request)))
        if name == "A2PSendSms" and state.roll(faults.process_then_500_rate):
            http_status = 500
            return PlainTextResponse("Internal Server Error", status_code=500)
        return JSONResponse(result)
    except ApiError as exc:
        api_error = exc.code
        return JSONResponse(exc.body())
    except Exception as exc:  # never crash: report an API-shaped error instead
        log.exception("emulator bug while handling %s", name)
        api_error = http_status = 500
        body = {"error": {"code": 500, "msg": f"Emulator error: {type(exc).__name__}"}}
        return JSONResponse(body, status_code=500)
    finally:
        state.end_request(api_error, http_status)


class _BrokenResponse(Response):
    """Sends the status line and headers, then dies: the server closes the connection mid-answer."""

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
        )
        raise ConnectionAbortedError("emulator fault: connection reset mid-answer")


async def _read_params(request: Request, max_body: int) -> dict[str, Any]:
    """Query string, then a form body on top; ApiError 101 for oversized or unreadable input."""
    values = dict(request.query_params)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise ApiError(errors.INVALID_ARGUMENTS, "Invalid arguments: request too large")
    if not body:
        return values
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (_FORM, ""):
        raise ApiError(errors.INVALID_ARGUMENTS, f"Invalid arguments: send {_FORM}")
    try:
        text = body.decode("utf-8")
        values.update(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except ValueError:  # UnicodeDecodeError or too many fields
        raise ApiError(errors.INVALID_ARGUMENTS, "Invalid arguments: unreadable body") from None
    return values


def _base_url(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/platform_api"
