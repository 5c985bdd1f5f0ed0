"""Every exception the provider raises, and what each Voximplant API error code means for a caller.

Errors in what the user gave (recipients, parameters, the connection) subclass
:class:`InputError`: a retry cannot help, so the operator fails the task without retries.
"""

from __future__ import annotations

import re

# Authentication and token errors: every request of the run would be refused the same way.
AUTH_CODES = frozenset({100, 433, 447, 454, 455, 456})
# Whole-request errors that will repeat for every batch of a run: stop instead of burning the list.
FATAL_CODES = AUTH_CODES | {104, 127, 507, 508, 528}
# What to do about a stopping error, appended to its message.
FIXES = {
    100: "authorization failed: check that the service account still exists, that its role "
    "allows A2P SMS (CallsSMS), and that the 'account_id' extra names an account it may act for",
    104: "the method is forbidden for this account or key: give the service account a role "
    "that allows A2P SMS (CallsSMS) in the Voximplant control panel",
    127: "the account has run out of money: top it up, then retry the task",
    433: "the key id is not known to Voximplant: is this the service account's current "
    "credentials.json?",
    447: "Voximplant could not read the token: is the connection's Password the whole "
    "credentials.json of a service account?",
    454: "Voximplant refused the token's lifetime: check this machine's clock (NTP)",
    455: "Voximplant says the token was issued in the future: this machine's clock is ahead; "
    "sync it (NTP)",
    456: "Voximplant says the token has expired: this machine's clock is behind; sync it (NTP)",
    507: "the src_number (SenderID) is not registered for A2P SMS on this account: use one "
    "of the account's SenderIDs",
    508: "the text was refused: 1 to 1600 characters",
    528: "SMS is not supported for this account or sender: enable A2P SMS in the control panel",
}
# Stops that a retry can get past without a code change (insufficient money: top up).
RESUMABLE_CODES = frozenset({127})
# Throttling answers: the request was not processed; wait and send it again.
THROTTLING_CODES = frozenset({314, 340, 416})
THROTTLING_HTTP_STATUSES = frozenset({429, 503})

_REPEAT_AFTER = re.compile(r"repeat after (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


class VoximplantError(Exception):
    """Base class of every error this provider raises."""


class InputError(VoximplantError, ValueError):
    """What the user gave cannot be used as it is; nothing was sent, and a retry cannot help."""


class CredentialsError(InputError):
    """The service-account credentials are missing or unusable (never echoes the key)."""


class ConfigurationError(InputError):
    """The connection or operator settings are invalid (base URL, timeouts, ...)."""


class RecipientsError(InputError):
    """Recipients or texts that cannot be used as given; raised before anything is sent."""


class LedgerError(VoximplantError):
    """The send ledger could not be read or written."""


class ResultsError(VoximplantError):
    """The results table could not be written."""


class CampaignStoppedError(VoximplantError):
    """A run stopped, or left numbers unknown, in a way a retry with the send ledger can finish."""


class VoximplantApiError(VoximplantError):
    """The API answered ``{"error": {"code": ..., "msg": ...}}``."""

    def __init__(self, method: str, code: int, message: str):
        fix = f" ({FIXES[code]})" if code in FIXES else ""
        super().__init__(f"Voximplant {method} failed with error {code}: {message}{fix}")
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
        self.reason = reason
        self.maybe_processed = maybe_processed
        self.cause: str | None = None  # the network library's error type, when one was raised


def is_throttling(error: BaseException) -> bool:
    """True for the answers that mean "not processed, slow down and send again"."""
    return isinstance(error, VoximplantApiError | VoximplantHttpError) and error.is_throttling
