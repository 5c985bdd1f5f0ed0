"""The API-shaped error the emulator answers with, and the Voximplant codes it uses."""

from __future__ import annotations

AUTH_FAILED = 100
INVALID_ARGUMENTS = 101
INSUFFICIENT_MONEY = 127
INVALID_KEY_ID = 433
INVALID_TOKEN_FORMAT = 447
INVALID_TOKEN_TTL = 454
TOKEN_FROM_FUTURE = 455
TOKEN_EXPIRED = 456
RATE_LIMIT = 340
RETRY_LATER = 416
NO_ROUTES = 506
INVALID_SRC_NUMBER = 507
INVALID_TEXT = 508
A2P_DISABLED_FOR_NUMBER = 509


class ApiError(Exception):
    """A whole-call failure, sent as HTTP 200 with ``{"error": {"code": ..., "msg": ...}}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg

    def body(self) -> dict:
        """The JSON body the real API sends for this error."""
        return {"error": {"code": self.code, "msg": self.msg}}
