"""docker/airflow.env: the Airflow settings the compose stack and the cluster test share.

docker-compose.yaml reads the file with ``env_file:``; tests/cluster parses it with
`read_env_file` and starts its Airflow components with the same values. The file keeps to the
part of the env-file syntax every reader agrees on (``KEY=value`` lines and ``#`` comment
lines; no quotes, spaces, ``$``, ``#`` or backslashes in values): anything else is an error
here, not a value compose and the test would read differently.
"""

from __future__ import annotations

import re
from pathlib import Path

SHARED_SETTINGS = Path(__file__).resolve().parents[1] / "docker" / "airflow.env"

_SETTING = re.compile(r"(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>[^\s'\"$#\\]*)")


def read_env_file(path: Path = SHARED_SETTINGS) -> dict[str, str]:
    """The file's settings, in order; ValueError on a line outside the agreed syntax."""
    settings: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SETTING.fullmatch(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not a plain KEY=value line: {line!r}")
        if match["key"] in settings:
            raise ValueError(f"{path}:{number}: {match['key']} is set twice")
        settings[match["key"]] = match["value"]
    return settings
