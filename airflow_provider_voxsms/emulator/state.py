"""Everything the emulator remembers, in one object behind one lock."""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_voxsms.emulator import errors
from airflow_provider_voxsms.emulator.auth import TokenVerifier
from airflow_provider_voxsms.emulator.credentials import Credentials
from airflow_provider_voxsms.emulator.errors import ApiError
from airflow_provider_voxsms.emulator.faults import Faults
from airflow_provider_voxsms.emulator.store import MessageLog

DEFAULT_SENDER_IDS = frozenset({"447443332211", "VoxDemo"})


@dataclass(frozen=True)
class EmulatorConfig:
    """The simulated account's settings (restored by ``reset``).

    :param sender_ids: src_number values A2PSendSms accepts; others get error 507.
    :param child_account_ids: account ids the key's owner may also put in the token's ``iss``.
    :param price_per_fragment: the ``cost`` history reports per fragment.
    :param first_message_id: message ids count up from here.
    """

    sender_ids: frozenset[str] = DEFAULT_SENDER_IDS
    child_account_ids: frozenset[int] = frozenset()
    account_name: str = "voxsms-emulator"
    balance: float = 100.0
    currency: str = "USD"
    price_per_fragment: float = 0.0325
    first_message_id: int = 1_000_001

    def __post_init__(self) -> None:
        object.__setattr__(self, "sender_ids", frozenset(map(str, self.sender_ids)))
        object.__setattr__(self, "child_account_ids", frozenset(map(int, self.child_account_ids)))


@dataclass(slots=True)
class Message:
    """One accepted message: one destination of one A2PSendSms call."""

    message_id: int
    transaction_id: int
    source_number: str
    destination_number: str
    text: str
    fragments: int
    cost: float
    time: float  # seconds since the epoch
    store_body: bool
    visible_at: float  # when A2PGetSmsHistory starts to show it (time + faults.history_lag_s)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Stats:
    """Counters for tests and benchmarks; ``snapshot`` gives a JSON-friendly copy."""

    requests: int = 0
    per_method: Counter = field(default_factory=Counter)
    api_errors: Counter = field(default_factory=Counter)  # code -> count
    http_faults: Counter = field(default_factory=Counter)  # status -> count
    tokens: set = field(default_factory=set)
    max_batch_size: int = 0
    accepted: int = 0
    failed_numbers: int = 0
    fragments: int = 0
    duplicates: int = 0  # accepted messages whose (destination, text) was accepted before
    in_flight: int = 0
    max_in_flight: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "per_method": dict(self.per_method),
            "api_errors": {str(k): v for k, v in self.api_errors.items()},
            "http_faults": {str(k): v for k, v in self.http_faults.items()},
            "distinct_tokens": len(self.tokens),
            "max_batch_size": self.max_batch_size,
            "accepted": self.accepted,
            "failed_numbers": self.failed_numbers,
            "fragments": self.fragments,
            "duplicates": self.duplicates,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class EmulatorState:
    """Keys, configuration, faults, accepted messages and stats; safe to use from any thread.

    :param credentials: the account key(s) the server accepts; the first is the main account.
    :param config: account settings; :param faults: initial fault configuration.
    :param messages_path: a JSON-lines file (``store.MessageLog``) that keeps accepted messages
        across restarts: read here (ids continue after the highest), appended on accept, emptied
        by ``reset``. None (the default): messages live in memory only.
    """

    def __init__(
        self,
        credentials: Credentials | Iterable[Credentials] | None = None,
        config: EmulatorConfig | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        messages_path: str | os.PathLike | None = None,
    ) -> None:
        if credentials is None:
            credentials = Credentials.generate()
        self.keys = [credentials] if isinstance(credentials, Credentials) else list(credentials)
        self.credentials = self.keys[0]
        self.clock = clock
        self.lock = threading.Lock()
        self._initial = (config or EmulatorConfig(), faults or Faults())
        self.message_log = MessageLog(messages_path) if messages_path is not None else None
        with self.lock:
            self._restore()
            if self.message_log is not None:
                rows = sorted(self.message_log.load(), key=lambda row: row["message_id"])
                self._remember([Message(**row) for row in rows])

    # -- configuration -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget messages (also on disk), stats and cached tokens; restore config and faults."""
        with self.lock:
            self._restore()
            if self.message_log is not None:
                self.message_log.clear()

    def _restore(self) -> None:
        """The initial config and faults, no messages, fresh stats (under the lock)."""
        self.config, faults = self._initial
        self._apply_faults(faults, reseed=True, rearm=True)
        self.verifier = TokenVerifier(self.keys, self.config.child_account_ids, self.clock)
        self.messages: list[Message] = []
        self.by_id: dict[int, Message] = {}
        self._sent: set[tuple[str, str]] = set()
        self.next_message_id = self.config.first_message_id
        self.stats = Stats()

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change account settings (e.g. ``sender_ids``) until the next reset."""
        with self.lock:
            self.config = dataclasses.replace(self.config, **changes)
            self.verifier = TokenVerifier(self.keys, self.config.child_account_ids, self.clock)
            return self.config

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults (``faults``) and/or patch fields (``changes``); returns the result.

        Giving ``faults`` or an ``http_503_burst`` change re-arms the 503 countdown.
        """
        with self.lock:
            rearm = faults is not None or "http_503_burst" in changes
            self._apply_faults((faults or self.faults).patched(changes), rearm=rearm)
            return self.faults

    def _apply_faults(self, faults: Faults, reseed: bool = False, rearm: bool = False) -> None:
        reseed = reseed or faults.seed != self.faults.seed
        self.faults = faults
        if reseed:
            self.rng = random.Random(faults.seed)
        if rearm:
            self.http_503_burst_left = faults.http_503_burst

    def take_503_burst(self) -> bool:
        """True (and one fewer left) while the ``http_503_burst`` countdown is running."""
        with self.lock:
            if self.http_503_burst_left <= 0:
                return False
            self.http_503_burst_left -= 1
            return True

    def roll(self, rate: float) -> bool:
        """Draw once from the fault RNG: True with probability ``rate``."""
        if rate <= 0.0:
            return False
        with self.lock:
            return self.rng.random() < rate

    # -- recording -----------------------------------------------------------------------

    def begin_request(self, method: str | None, token: str | None) -> None:
        with self.lock:
            s = self.stats
            s.requests += 1
            s.per_method[method or "?"] += 1
            if token:
                s.tokens.add(token)
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)

    def end_request(self, api_error: int | None = None, http_status: int | None = None) -> None:
        with self.lock:
            self.stats.in_flight -= 1
            if api_error is not None:
                self.stats.api_errors[api_error] += 1
            if http_status is not None:
                self.stats.http_faults[http_status] += 1

    def accept(
        self,
        source: str,
        destinations: list[str],
        text: str,
        fragments: int,
        store_body: bool,
        batch_size: int,
        failed: int,
    ) -> list[Message]:
        """Store one message per destination with fresh increasing ids; update the stats.

        Raises ApiError 127 instead once ``faults.insufficient_money_after`` messages were taken.
        """
        now = self.clock()
        cost = round(fragments * self.config.price_per_fragment, 4)
        with self.lock:
            visible_at = now + self.faults.history_lag_s
            limit = self.faults.insufficient_money_after
            if limit is not None and self.stats.accepted >= limit:
                raise ApiError(errors.INSUFFICIENT_MONEY, "Insufficient money")
            first = self.next_message_id
            out = [
                Message(
                    mid, mid, source, number, text, fragments, cost, now, store_body, visible_at
                )
                for mid, number in enumerate(destinations, first)
            ]
            if self.message_log is not None:  # first: a failed write leaves the state as it was
                self.message_log.append(
                    first,
                    destinations,
                    source_number=source,
                    text=text,
                    fragments=fragments,
                    cost=cost,
                    time=now,
                    store_body=store_body,
                    visible_at=visible_at,
                )
            s = self.stats
            s.max_batch_size = max(s.max_batch_size, batch_size)
            s.failed_numbers += failed
            self._remember(out)
            return out

    def _remember(self, messages: list[Message]) -> None:
        """Keep ``messages`` (new or loaded), count them; ids continue after the highest."""
        s = self.stats
        for msg in messages:
            self.by_id[msg.message_id] = msg
            s.fragments += msg.fragments
            key = (msg.destination_number, msg.text)
            if key in self._sent:
                s.duplicates += 1
            else:
                self._sent.add(key)
        self.messages.extend(messages)
        s.accepted += len(messages)
        if messages:
            self.next_message_id = max(self.next_message_id, messages[-1].message_id + 1)

    # -- reading -------------------------------------------------------------------------

    @property
    def accepted_count(self) -> int:
        return self.stats.accepted

    def select(
        self,
        message_ids: list[int] | None = None,
        source: str | None = None,
        destination: str | None = None,
        since: float | None = None,
        until: float | None = None,
        visible_by: float | None = None,
    ) -> list[Message]:
        """Messages matching every given filter, oldest first.

        ``visible_by``: only messages visible at that time (see ``Faults.history_lag_s``).
        """
        with self.lock:
            if message_ids is not None:
                rows = [self.by_id[i] for i in sorted(set(message_ids)) if i in self.by_id]
            else:
                rows = list(self.messages)
        return [
            m
            for m in rows
            if (source is None or m.source_number == source)
            and (destination is None or m.destination_number == destination)
            and (since is None or m.time >= since)
            and (until is None or m.time < until + 1)  # to_date is inclusive, to the second
            and (visible_by is None or m.visible_at <= visible_by)
        ]

    def messages_snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m.to_dict() for m in self.messages]

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.stats.snapshot()
