"""A local Voximplant Management API (A2PSendSms, A2PGetSmsHistory, GetAccountInfo), like moto.

Start it in tests with ``with EmulatorServer() as server:`` (or the ``voximplant_emulator``
pytest fixture) and from a shell with ``voxsms-emulator``. State lives in ``server.state``;
faults are a :class:`Faults` value, changed at runtime with ``state.set_faults(...)`` or
``POST /_emulator/faults``.
"""

from __future__ import annotations

from airflow_provider_voxsms.emulator.app import create_app
from airflow_provider_voxsms.emulator.credentials import Credentials, load_or_create
from airflow_provider_voxsms.emulator.errors import ApiError
from airflow_provider_voxsms.emulator.faults import Faults
from airflow_provider_voxsms.emulator.server import EmulatorServer
from airflow_provider_voxsms.emulator.state import EmulatorConfig, EmulatorState, Message

__all__ = [
    "ApiError",
    "Credentials",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "Faults",
    "Message",
    "create_app",
    "load_or_create",
]
