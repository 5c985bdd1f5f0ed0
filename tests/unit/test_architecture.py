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


# phonenumbers' metadata internals: what the numbering-plan engine alone may read, so a change of
# phonenumbers' metadata format touches one module. Its public functions (parse, number_type,
# is_possible_number_with_reason, ...) may be used anywhere.
METADATA = "metadata"
TIME_ZONES = "time-zone data"
_INTERNAL_MODULES = {
    "phonenumbers.phonemetadata": METADATA,
    "phonenumbers.data": METADATA,
    "phonenumbers.shortdata": METADATA,
    "phonenumbers.geodata": METADATA,
    "phonenumbers.carrierdata": METADATA,
    "phonenumbers.tzdata": TIME_ZONES,
}
_INTERNAL_NAMES = {
    "PhoneMetadata": METADATA,
    "PhoneNumberDesc": METADATA,
    "NumberFormat": METADATA,
    "COUNTRY_CODE_TO_REGION_CODE": METADATA,
    "SUPPORTED_REGIONS": METADATA,
    "phonemetadata": METADATA,
    "data": METADATA,
    "TIMEZONE_DATA": TIME_ZONES,
    "TIMEZONE_LONGEST_PREFIX": TIME_ZONES,
    "tzdata": TIME_ZONES,
}
MAY_READ = {
    f"{NAME}.sms.numbers.plan": {METADATA},
    f"{NAME}.sms.numbers.zones": {TIME_ZONES},
}


def _internal_module(name: str) -> str | None:
    return next(
        (
            kind
            for mod, kind in _INTERNAL_MODULES.items()
            if name == mod or name.startswith(mod + ".")
        ),
        None,
    )


def phonenumbers_internals(source: str) -> set[str]:
    """The kinds of phonenumbers' internals (metadata, time-zone data) ``source`` reaches: by
    importing their modules or names, or as attributes of the ``phonenumbers`` module."""
    tree = ast.parse(source)
    aliases = {"phonenumbers"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "phonenumbers":
                    aliases.add(alias.asname or alias.name)
                elif kind := _internal_module(alias.name):
                    found.add(kind)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if kind := _internal_module(node.module):
                found.add(kind)
            elif node.module == "phonenumbers":
                found |= {_INTERNAL_NAMES[a.name] for a in node.names if a.name in _INTERNAL_NAMES}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr in _INTERNAL_NAMES
        ):
            found.add(_INTERNAL_NAMES[node.attr])
    return found


def test_only_the_numbering_plan_reads_phonenumbers_metadata():
    """phonenumbers' metadata (``PhoneMetadata``, ``phonenumbers.data``, the calling-code table)
    is read by ``sms/numbers/plan.py`` alone, and its time-zone data by ``sms/numbers/zones.py``:
    everything else asks them."""
    readers = {name: phonenumbers_internals(path.read_text()) for name, path in modules().items()}
    wrong = {
        name: sorted(kinds - MAY_READ.get(name, set()))
        for name, kinds in readers.items()
        if kinds - MAY_READ.get(name, set())
    }
    assert not wrong, f"only the numbering plan may read phonenumbers' internals: {wrong}"
    assert readers[f"{NAME}.sms.numbers.plan"] == {METADATA}  # the check still sees the engine


@pytest.mark.parametrize(
    "source",
    [
        "import phonenumbers\nphonenumbers.PhoneMetadata.metadata_for_region('GB')",
        "import phonenumbers as pn\nregions = pn.COUNTRY_CODE_TO_REGION_CODE",
        "from phonenumbers import PhoneMetadata",
        "from phonenumbers.phonemetadata import PhoneMetadata",
        "import phonenumbers.data",
        "from phonenumbers.data import _COUNTRY_CODE_TO_REGION_CODE",
        "def f():\n    from phonenumbers.tzdata import TIMEZONE_DATA",
    ],
)
def test_the_metadata_check_sees_every_way_in(source):
    """Each way of reaching the internals counts, so the test above fails when another module
    reads them; the public functions do not count."""
    assert phonenumbers_internals(source)
    assert not phonenumbers_internals("import phonenumbers\nphonenumbers.parse('+44', None)")


def test_imports_from_a_module_with_all_name_only_what_it_lists():
    """A module that says what it offers (``__all__``) is used only through that: other modules
    import no helper of it that is not listed (a package's submodules aside)."""
    known = modules()
    offered = {}
    for name, path in known.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                offered[name] = set(ast.literal_eval(node.value))
    wrong = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in offered and node.module != name:
                wrong += [
                    f"{name} imports {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in offered[node.module]
                    and f"{node.module}.{alias.name}" not in known  # a submodule, not a name
                ]
    assert not wrong, wrong


def test_storage_imports_no_operator_trigger_or_hook_and_no_airflow_at_import():
    """``storage/`` (every table) sits below the operators, triggers and hooks that use it:
    it imports none of them anywhere, and importing every module of it in a fresh interpreter
    loads no Airflow (connections are looked up when a table is opened)."""
    known = modules()
    storage = sorted(name for name in known if name.startswith(f"{NAME}.storage"))
    assert f"{NAME}.storage.ledger" in storage
    upward = ("operators", "triggers", "hooks")
    for name in storage:
        bad = sorted(t for t in imports_of(known[name], known) if component(t) in upward)
        assert not bad, f"{name} imports {bad}"
    probe = (
        "import importlib, sys\n"
        f"for name in {storage!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests')\n"
        f"             or m.startswith(('{NAME}.hooks', '{NAME}.operators', '{NAME}.triggers')))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
