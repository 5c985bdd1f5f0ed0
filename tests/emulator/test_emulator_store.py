"""``messages.jsonl``: EmulatorState(messages_path=...) keeps accepted messages across restarts."""

from __future__ import annotations

import pytest

from airflow_provider_voxsms.emulator import Credentials, EmulatorState


@pytest.fixture(scope="module")
def creds() -> Credentials:
    return Credentials.generate()


def accept(state: EmulatorState, numbers: list[str], text: str = "hi") -> list[int]:
    msgs = state.accept("VoxDemo", numbers, text, 1, False, len(numbers), 0)
    return [m.message_id for m in msgs]


def test_a_new_state_on_the_same_file_has_the_messages_and_continues_the_ids(tmp_path, creds):
    path = tmp_path / "messages.jsonl"
    first = EmulatorState(creds, messages_path=path)
    accept(first, ["447443332212", "447443332213"])
    accept(first, ["447443332214"], text="Привет, 'quotes' \"and\" %s")
    assert len(path.read_text().splitlines()) == 2  # one line per request

    second = EmulatorState(creds, messages_path=path)
    assert second.messages_snapshot() == first.messages_snapshot()
    assert accept(second, ["447443332212"]) == [1_000_004]
    assert second.stats_snapshot()["duplicates"] == 1
    assert [m.message_id for m in second.select(message_ids=[1_000_003])] == [1_000_003]


def test_reset_empties_the_file_and_memory_only_states_write_nothing(tmp_path, creds):
    path = tmp_path / "messages.jsonl"
    state = EmulatorState(creds, messages_path=path)
    accept(state, ["447443332212"])
    state.reset()
    assert path.read_text() == ""
    assert EmulatorState(creds, messages_path=path).messages == []
    accept(EmulatorState(creds), ["447443332212"])
    assert list(tmp_path.iterdir()) == [path]


def test_a_torn_last_line_is_skipped(tmp_path, creds):
    path = tmp_path / "messages.jsonl"
    accept(EmulatorState(creds, messages_path=path), ["447443332212"])
    with path.open("a") as f:
        f.write('{"first_message_id": 1000002, "destination_num')  # killed mid-write
    state = EmulatorState(creds, messages_path=path)
    assert [m.message_id for m in state.messages] == [1_000_001]
    assert accept(state, ["447443332213"]) == [1_000_002]
    state.message_log.close()
    assert [m.message_id for m in EmulatorState(creds, messages_path=path).messages] == [
        1_000_001,
        1_000_002,
    ]
