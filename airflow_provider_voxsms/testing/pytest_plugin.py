"""pytest fixtures for a local Voximplant emulator (entry point ``voxsms``, loaded automatically).

One server per test session is started on first use; each test gets it freshly reset, so tests
stay isolated and fast. Imports of the emulator are deferred: loading this plugin costs nothing.

- ``voximplant_emulator``: the running :class:`EmulatorServer` (plain HTTP).
- ``voximplant_emulator_tls``: the same over HTTPS; trust ``server.cert_path``.
- ``voximplant_conn``: ``voximplant_emulator`` with ``AIRFLOW_CONN_VOXIMPLANT_DEFAULT`` set.
- ``voximplant_delivery``: sets the emulator's delivery lifecycle, e.g.
  ``voximplant_delivery(queued_s=1, dispatched_s=2, by_last_digit="7=FAILED,9=NEVER")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_voxsms.emulator.server import EmulatorServer


def _serve(tls: bool) -> Iterator[EmulatorServer]:
    from airflow_provider_voxsms.emulator.server import EmulatorServer

    with EmulatorServer(tls=tls) as server:
        yield server


@pytest.fixture(scope="session")
def _voximplant_emulator_session() -> Iterator[EmulatorServer]:
    yield from _serve(tls=False)


@pytest.fixture(scope="session")
def _voximplant_emulator_tls_session() -> Iterator[EmulatorServer]:
    yield from _serve(tls=True)


@pytest.fixture
def voximplant_emulator(_voximplant_emulator_session: EmulatorServer) -> EmulatorServer:
    """The session's emulator, reset: no messages, no stats, initial config and faults."""
    _voximplant_emulator_session.state.reset()
    return _voximplant_emulator_session


@pytest.fixture
def voximplant_emulator_tls(_voximplant_emulator_tls_session: EmulatorServer) -> EmulatorServer:
    """The session's HTTPS emulator, reset; its CA certificate is ``server.cert_path``."""
    _voximplant_emulator_tls_session.state.reset()
    return _voximplant_emulator_tls_session


@pytest.fixture
def voximplant_conn(
    voximplant_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> EmulatorServer:
    """``voximplant_emulator`` with ``AIRFLOW_CONN_VOXIMPLANT_DEFAULT`` pointing at it."""
    monkeypatch.setenv("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", voximplant_emulator.connection_json())
    return voximplant_emulator


@pytest.fixture
def voximplant_delivery(voximplant_emulator: EmulatorServer):
    """A function that sets the reset emulator's delivery lifecycle: the ``Faults.delivery_*``
    fields without their prefix (``queued_s``, ``dispatched_s``, ``failed_rate``,
    ``expired_rate``, ``rejected_rate``, ``aborted_rate``, ``unknown_rate``,
    ``never_final_rate``, ``by_last_digit``); returns the faults in force."""

    def configure(**settings):
        return voximplant_emulator.state.set_faults(
            **{f"delivery_{name}": value for name, value in settings.items()}
        )

    return configure
