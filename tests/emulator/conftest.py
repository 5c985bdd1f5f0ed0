"""Shared helpers for the emulator tests: a tiny HTTP client that speaks both request styles."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pytest
import requests

from airflow_provider_voxsms.emulator import EmulatorServer
from airflow_provider_voxsms.testing.tokens import auth_header

SENDER = "447443332211"
NUMBERS = [f"4474433322{i:02d}" for i in range(12, 20)]


@dataclass
class Api:
    """Calls the emulator over plain HTTP with a valid token unless told otherwise."""

    server: EmulatorServer
    session: requests.Session = field(default_factory=requests.Session)

    def headers(self, **token_args: Any) -> dict[str, str]:
        """A fresh token (signing loads the PEM: ~40 ms, so plain calls reuse ``valid``)."""
        return auth_header(self.server.state.credentials, **token_args)

    @cached_property
    def valid(self) -> dict[str, str]:
        return self.headers()

    def call(
        self,
        method: str,
        *,
        style: str = "cmd",
        headers: dict[str, str] | None = None,
        timeout: float = 10,
        **params: Any,
    ) -> requests.Response:
        """``style``: "cmd" (form body with cmd=, like official clients), "path" (query
        string on /platform_api/<Method>) or "path-form" (form body on /platform_api/<Method>)."""
        headers = self.valid if headers is None else headers
        url = self.server.base_url
        if style == "cmd":
            return self.session.post(
                url, data={"cmd": method, **params}, headers=headers, timeout=timeout
            )
        url = f"{url}/{method}"
        if style == "path":
            return self.session.post(url, params=params, headers=headers, timeout=timeout)
        return self.session.post(url, data=params, headers=headers, timeout=timeout)

    def ok(self, method: str, **params: Any) -> dict:
        r = self.call(method, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "error" not in body, body
        return body

    def error(self, method: str, **params: Any) -> dict:
        """The ``{"code", "msg"}`` of a whole-call error (asserting HTTP 200, as the API does)."""
        r = self.call(method, **params)
        assert r.status_code == 200, r.text
        return r.json()["error"]

    def send(self, numbers: list[str] | str = NUMBERS[:2], text: str = "Hello", **params) -> dict:
        dst = numbers if isinstance(numbers, str) else ";".join(numbers)
        return self.ok("A2PSendSms", src_number=SENDER, dst_numbers=dst, text=text, **params)

    def introspect(self, path: str) -> Any:
        r = self.session.get(f"{self.server.origin}/_emulator/{path}", timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture
def api(voximplant_emulator: EmulatorServer) -> Api:
    return Api(voximplant_emulator)
