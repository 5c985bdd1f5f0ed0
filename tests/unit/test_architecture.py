"""The package's shape: the campaign engine stays pure, and imports flow one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_voxsms"
NAME = PACKAGE.name


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere (also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith(NAME)}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(NAME):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                out.add(child if child in known else node.module)
    return out


def component(name: str) -> str:
    """``airflow_provider_voxsms.sms.plan`` -> ``sms``; the package itself -> its name."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else name


@pytest.mark.parametrize("level", ["module", "component"])
def test_the_package_has_no_import_cycle(level):
    """No module imports itself through others, and neither does a component (``sms/``,
    ``ledger``, ``hooks/``...): the campaign engine never reaches back into what uses it."""
    known = modules()
    key = (lambda name: name) if level == "module" else component
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        graph.setdefault(key(name), set()).update(key(t) for t in imports_of(path, known))
    for name, targets in graph.items():
        targets.discard(name)
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                pytest.fail(f"import cycle: {' -> '.join([*trail[trail.index(target) :], target])}")
            if target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_sms_core_imports_neither_airflow_nor_the_hook():
    """Importing every module of ``sms/`` in a fresh interpreter loads no Airflow, no HTTP
    client and no hook: the engine can be used and tested on its own."""
    core = sorted(name for name in modules() if name.startswith(f"{NAME}.sms."))
    assert f"{NAME}.sms.campaign" in core
    probe = (
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests')\n"
        f"             or m.startswith('{NAME}.hooks'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
