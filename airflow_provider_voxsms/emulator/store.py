"""``messages.jsonl``: the accepted messages on disk, so they survive a restart of the emulator.

One JSON line per accepted A2PSendSms request, whose messages share everything but their id and
number: ``{"first_message_id": 1000001, "destination_numbers": [...], "source_number": ...,
"text": ..., "fragments": ..., "cost": ..., "time": ..., "store_body": ..., "visible_at": ...}``;
message ids count up from ``first_message_id`` in the order of ``destination_numbers``. One
``json.dumps`` and one write per request (no fsync: it is an emulator), so a million messages
cost well under a second; start-up reads them back; ``/_emulator/reset`` empties the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MESSAGES_FILE = "messages.jsonl"


class MessageLog:
    """Append-only JSON-lines file of accepted requests; not thread-safe (the state's lock is).

    :param path: the file; its directory is created on first write.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def append(self, first_message_id: int, destinations: list[str], **shared: Any) -> None:
        """Write one request's messages as one line and hand it to the OS."""
        if not destinations:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            if self._file.tell() and not self._ends_with_newline():
                self._file.write("\n")  # end a torn line, so the next one stays readable
        line = {"first_message_id": first_message_id, "destination_numbers": destinations}
        self._file.write(json.dumps({**line, **shared}) + "\n")
        self._file.flush()

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def load(self) -> Iterator[dict[str, Any]]:
        """Every stored message as a dict (``message_id``, ``transaction_id``, the shared fields,
        ``destination_number``), in file order; a torn last line (a crash mid-write) is skipped."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    first, numbers = row.pop("first_message_id"), row.pop("destination_numbers")
                except (ValueError, KeyError, AttributeError):
                    continue
                for mid, number in enumerate(numbers, first):
                    yield {
                        "message_id": mid,
                        "transaction_id": mid,
                        "destination_number": number,
                        **row,
                    }

    def clear(self) -> None:
        """Empty the file (``/_emulator/reset``)."""
        self.close()
        if self.path.exists():
            self.path.write_text("")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
