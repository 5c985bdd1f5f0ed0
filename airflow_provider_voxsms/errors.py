"""Exceptions raised by the provider, and what each Voximplant API error code means for a caller."""

from __future__ import annotations

import re

# Whole-request errors that will repeat for every batch of a run: stop instead of burning the list.
FATAL_CODES = frozenset({100, 104, 127, 507, 508, 528})
# Stops that a retry can get past without a code change (insufficient money: top up).
RESUMABLE_CODES = frozenset({127})
# Throttling answers: the request was not processed; wait and send it again.
THROTTLING_CODES = frozenset({314, 340, 416})
THROTTLING_HTTP_STATUSES = frozenset({429, 503})

_REPEAT_AFTER = re.compile(r"repeat after (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


class VoximplantError(Exception):
    """Base class of every error this provider raises."""


class CredentialsError(VoximplantError):
    """The service-account credentials are missing or unusable (never echoes the key)."""


class ConfigurationError(VoximplantError):
    """The connection or operator settings are invalid (base URL, timeouts, ...)."""


class VoximplantApiError(VoximplantError):
    """The API answered ``{"error": {"code": ..., "msg": ...}}``."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"Voximplant {method} failed with error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message

    @property
    def is_fatal(self) -> bool:
        """True when the same call would fail the same way for every batch of a run."""
        return self.code in FATAL_CODES

    @property
    def is_throttling(self) -> bool:
        return self.code in THROTTLING_CODES

    @property
    def retry_after(self) -> float | None:
        """Seconds the API asked us to wait ("Repeat after N seconds"), if it said."""
        match = _REPEAT_AFTER.search(self.message)
        return float(match.group(1)) if match else None


class VoximplantHttpError(VoximplantError):
    """A non-2xx status or a body that is not the API's JSON (a gateway page, say)."""

    def __init__(self, method: str, status: int, body: str, retry_after: float | None = None):
        excerpt = body.strip()[:200]
        super().__init__(f"Voximplant {method} answered HTTP {status}: {excerpt or '(empty body)'}")
        self.method = method
        self.status = status
        self.retry_after = retry_after

    @property
    def is_throttling(self) -> bool:
        return self.status in THROTTLING_HTTP_STATUSES


class VoximplantTransportError(VoximplantError):
    """The request failed on the network.

    ``maybe_processed`` is False only when the request provably never reached the server
    (the connection could not be opened); otherwise the server may have acted on it.
    """

    def __init__(self, method: str, reason: str, *, maybe_processed: bool):
        super().__init__(f"Voximplant {method}: {reason}")
        self.method = method
        self.maybe_processed = maybe_processed


def is_throttling(error: BaseException) -> bool:
    """True for the answers that mean "not processed, slow down and send again"."""
    return isinstance(error, VoximplantApiError | VoximplantHttpError) and error.is_throttling
