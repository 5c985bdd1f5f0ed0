"""The Management API methods the emulator implements, each a function of state and params."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from airflow_provider_voxsms.emulator import errors
from airflow_provider_voxsms.emulator.delivery import status_at as delivery_status_at
from airflow_provider_voxsms.emulator.errors import ApiError
from airflow_provider_voxsms.emulator.params import Params, format_date
from airflow_provider_voxsms.emulator.state import EmulatorState
from airflow_provider_voxsms.sms.model import DELIVERY_STATUS_NAMES
from airflow_provider_voxsms.sms.segments import MAX_TEXT_LENGTH, count_segments

MAX_DESTINATIONS = 100
MAX_HISTORY_COUNT = 1000
DELIVERY_STATUSES = DELIVERY_STATUS_NAMES


@dataclass(frozen=True)
class Call:
    """What a method needs besides its parameters."""

    state: EmulatorState
    params: Params
    account_id: int
    base_url: str  # this server's .../platform_api, reported as api_address


@lru_cache(maxsize=4096)
def _fragments(text: str) -> int:
    return count_segments(text).count


def _is_routable(number: str) -> bool:
    """E.164 without the plus: 8 to 15 digits."""
    return 8 <= len(number) <= 15 and number.isascii() and number.isdigit()


def a2p_send_sms(call: Call) -> dict[str, Any]:
    """Validate, then accept each routable, unblocked destination as one message.

    A missing ``text`` is error 101; an empty one or one over 1600 characters is 508.
    """
    p, state = call.params, call.state
    src = p.string("src_number", required=True)
    dst = p.items("dst_numbers", required=True)
    text = p.string("text", required=True)
    store_body = p.boolean("store_body", default=False)
    if len(dst) > MAX_DESTINATIONS:
        raise ApiError(
            errors.INVALID_ARGUMENTS,
            f"Invalid arguments: at most {MAX_DESTINATIONS} dst_numbers, got {len(dst)}",
        )
    if not text or len(text) > MAX_TEXT_LENGTH:
        raise ApiError(errors.INVALID_TEXT, f"Invalid text: 1 to {MAX_TEXT_LENGTH} characters")
    if src not in state.config.sender_ids:
        accepted = ", ".join(sorted(state.config.sender_ids)) or "none"
        raise ApiError(
            errors.INVALID_SRC_NUMBER,
            f"Invalid src_number {src!r}: this emulator accepts {accepted} "
            "(add one with --sender-id)",
        )
    blocked = state.faults.blocked_numbers
    ok: list[str] = []
    failed: list[dict[str, Any]] = []
    for number in dst:
        if not _is_routable(number):
            failed.append(_failure(number, errors.NO_ROUTES, "No routes for the number"))
        elif number in blocked:
            failed.append(_failure(number, errors.A2P_DISABLED_FOR_NUMBER, "A2P SMS disabled"))
        else:
            ok.append(number)
    fragments = _fragments(text)
    accepted = state.accept(src, ok, text, fragments, store_body, len(dst), len(failed))
    return {
        "result": [
            {"message_id": m.message_id, "destination_number": m.destination_number}
            for m in accepted
        ],
        "failed": failed,
        "fragments_count": fragments,
    }


def _failure(number: str, code: int, description: str) -> dict[str, Any]:
    return {"destination_number": number, "error_code": code, "error_description": description}


def a2p_get_sms_history(call: Call) -> dict[str, Any]:
    """Accepted messages, filtered and paged, each with its simulated delivery status.

    A message shows only ``Faults.history_lag_s`` seconds after it was accepted; its
    ``delivery_status`` follows ``emulator/delivery.py`` (DELIVERED at once by default), and
    ``delivery_status`` filters by it before paging.
    """
    p = call.params
    output = (p.string("output") or "json").lower()
    if output != "json":
        raise ApiError(errors.INVALID_ARGUMENTS, "Invalid arguments: the emulator only has json")
    count = p.integer("count", MAX_HISTORY_COUNT, lo=1, hi=MAX_HISTORY_COUNT)
    offset = p.integer("offset", 0)
    status = p.integer("delivery_status", None, lo=1, hi=8)
    rows = call.state.select(
        message_ids=p.integers("message_id"),
        source=p.string("source_number"),
        destination=p.string("destination_number"),
        since=p.date("from_date"),
        until=p.date("to_date"),
        visible_by=call.state.clock(),  # Faults.history_lag_s hides what was just accepted
    )
    faults, now = call.state.faults, call.state.clock()
    if status is not None:  # every row's status is needed to filter; otherwise the page's
        wanted = DELIVERY_STATUSES[status]
        statuses = [delivery_status_at(m, faults, now) for m in rows]
        kept = [i for i, st in enumerate(statuses) if st[0] == wanted]
        rows, statuses = [rows[i] for i in kept], [statuses[i] for i in kept]
    else:
        statuses = {
            i: delivery_status_at(rows[i], faults, now)
            for i in range(offset, min(offset + count, len(rows)))
        }
    page = range(offset, min(offset + count, len(rows)))
    return {
        "result": [
            {
                "message_id": rows[i].message_id,
                "source_number": rows[i].source_number,
                "destination_number": rows[i].destination_number,
                "fragments": rows[i].fragments,
                "cost": rows[i].cost,
                "status_id": "1",
                "error_message": statuses[i][1],
                "processing_date": format_date(rows[i].time),
                "transaction_id": rows[i].transaction_id,
                "delivery_status": statuses[i][0],
                **({"text": rows[i].text} if rows[i].store_body else {}),
            }
            for i in page
        ],
        "total_count": len(rows),
    }


def get_account_info(call: Call) -> dict[str, Any]:
    """The account behind the token, with this server as ``api_address``."""
    state = call.state
    cfg, creds = state.config, state.credentials
    broke = (
        state.faults.insufficient_money_after is not None
        and state.accepted_count >= state.faults.insufficient_money_after
    )
    info = {
        "account_id": call.account_id,
        "account_name": cfg.account_name,
        "account_email": creds.account_email,
        "active": True,
        "frozen": False,
        "balance": 0.0 if broke else cfg.balance,
        "currency": cfg.currency,
        "created": "2024-01-01 00:00:00",
        "a2p_sms_enabled": True,
        "api_address": call.base_url,
    }
    return {"result": info, "api_address": call.base_url}


METHODS: dict[str, Callable[[Call], dict[str, Any]]] = {
    "A2PSendSms": a2p_send_sms,
    "A2PGetSmsHistory": a2p_get_sms_history,
    "GetAccountInfo": get_account_info,
}
