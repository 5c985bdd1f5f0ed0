"""``make dist``: build the release, check what is in it, install it clean and use it.

1. ``uv build``: the sdist, then the wheel built *from the sdist* (so a file the sdist misses
   breaks the wheel), with the build backend pinned by ``scripts/build-constraints.txt``.
2. Contents: the sdist has README, pyproject, LICENSE (if the repo has one) and every module; the
   wheel has every module and every package file (bar NOT_SHIPPED), nothing of tests/, dags/,
   bench/, docker/ or scripts/, the metadata and the four entry points.
3. ``twine check --strict`` in a venv of its own.
4. A clean venv with only the wheel, installed with ``-c constraints.txt``; ``uv pip check``.
5. From it, with a throwaway AIRFLOW_HOME: ``airflow providers list`` and ``airflow providers
   hooks`` (the provider and its ``voximplant`` connection type), ``voxsms-emulator --help``,
   and the pytest plugin's module.
6. Hook round trips against ``voxsms-emulator`` started from that venv in its own process group
   on a free loopback port: over HTTP with the connection it prints (``test_connection``, an
   ``a2p_send_sms`` whose numbers must show up in ``/_emulator/messages``, and ``airflow
   connections test``), and over TLS with its CA in the ``ca_bundle`` extra. The emulator is
   stopped on every exit path.

Needs only the standard library and uv. Exits non-zero with the failed check named.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_voxsms"
DIST_NAME = "airflow-provider-voxsms"
# Files in the package directory that are deliberately not in the wheel: developer notes that the
# docs site publishes (docs/emulator.md includes it). Anything else there must ship.
NOT_SHIPPED = {f"{PACKAGE}/emulator/README.md"}
NOT_IN_WHEEL = ("tests/", "dags/", "bench/", "docker/", "scripts/", "docs/")
CONSTRAINTS = str(ROOT / "constraints.txt")
ENTRY_POINTS = {
    "apache_airflow_provider": f"provider_info = {PACKAGE}:get_provider_info",
    "console_scripts": f"voxsms-emulator = {PACKAGE}.emulator.__main__:main",
    "pytest11": f"voxsms = {PACKAGE}.testing.pytest_plugin",
    "airflow.plugins": f"voxsms = {PACKAGE}.ui.plugin:VoxSmsPlugin",  # the campaign page
}
SENDER = "VoxDemo"  # one of the emulator's default sender ids
NUMBERS = ["447443332212", "447443332213"]


class CheckFailed(Exception):
    pass


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def ok(what: str) -> None:
    print(f"   ok: {what}", flush=True)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    ok(what)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its output, so the log shows why."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(cmd, **kwargs)
    if proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise CheckFailed(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{out[-4000:]}")
    return proc


def tracked_package_files() -> set[str]:
    """The package's files as git knows them (the source of truth for what should ship)."""
    out = run(["git", "-C", str(ROOT), "ls-files", "--", PACKAGE]).stdout
    return {line for line in out.splitlines() if line and "__pycache__" not in line}


def build(uv: str, python: str, out_dir: Path) -> tuple[Path, Path]:
    step("build the sdist, then the wheel from the sdist")
    shutil.rmtree(out_dir, ignore_errors=True)
    run(
        [uv, "build", "--quiet", "--python", python, "--out-dir", str(out_dir)]
        + ["--build-constraints", str(ROOT / "scripts" / "build-constraints.txt"), str(ROOT)]
    )
    sdists, wheels = list(out_dir.glob("*.tar.gz")), list(out_dir.glob("*.whl"))
    check(len(sdists) == 1 and len(wheels) == 1, f"one sdist and one wheel in {out_dir}")
    for path in (*sdists, *wheels):
        print(f"   {path.name}: {path.stat().st_size // 1024} KiB")
    return sdists[0], wheels[0]


def source_version() -> str:
    for line in (ROOT / PACKAGE / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise CheckFailed(f"no __version__ in {PACKAGE}/__init__.py")


def license_files() -> list[str]:
    """What setuptools ships as license files by default (its ``license-files`` patterns)."""
    patterns = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")
    return sorted({p.name for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()})


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def check_sdist(sdist: Path, tracked: set[str]) -> None:
    step(f"sdist contents: {sdist.name}")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("README.md", "pyproject.toml", "PKG-INFO"):
        check(name in names, f"has {name}")
    for name in license_files():
        check(name in names, f"has {name}")
    if not license_files():
        print("   note: the repository has no LICENSE file, so the release ships none")
    modules = {f for f in tracked if f.endswith(".py")}
    missing = sorted(modules - names)
    check(not missing, f"has all {len(modules)} modules" + (f"; missing {missing}" * bool(missing)))


def check_wheel(wheel: Path, tracked: set[str], version: str) -> None:
    step(f"wheel contents: {wheel.name}")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"{PACKAGE}-{version}.dist-info"
        meta = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    tops = {n.split("/", 1)[0] for n in names}
    check(tops == {PACKAGE, dist_info}, f"only {PACKAGE}/ and its dist-info (got {sorted(tops)})")
    stray = sorted(n for n in names if n.startswith(NOT_IN_WHEEL) or "/tests/" in n)
    check(
        not stray,
        "no tests/, dags/, bench/, docker/, scripts/ or docs/" + f" {stray}" * bool(stray),
    )
    check(not any("__pycache__" in n or n.endswith(".pyc") for n in names), "no bytecode")
    should_ship = tracked - NOT_SHIPPED
    missing = sorted(should_ship - names)
    check(
        not missing,
        f"every package file ({len(should_ship)})" + f"; missing {missing}" * bool(missing),
    )
    data = sorted(f for f in should_ship if not f.endswith(".py"))
    if data:
        ok(f"package data: {data}")
    check(meta["Name"] == DIST_NAME, f"Name: {meta['Name']}")
    check(meta["Version"] == version, f"Version {meta['Version']} == {PACKAGE}.__version__")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spdx = meta.get("License-Expression")
    check(spdx == project["license"], f"License-Expression: {spdx}")
    for name in license_files():
        check(f"{dist_info}/licenses/{name}" in names, f"has {name} in its dist-info")
    check(
        meta.get("Requires-Python") == project["requires-python"],
        f"Requires-Python: {meta.get('Requires-Python')}",
    )
    runtime = {
        requirement_name(r) for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r
    }
    declared = {requirement_name(r) for r in project["dependencies"]}
    check(runtime == declared, f"Requires-Dist: the {len(declared)} dependencies of pyproject")
    check(
        meta.get("Description-Content-Type") == "text/markdown"
        and "A2PSendSmsOperator" in str(meta.get_payload()),
        "long description is the README, as Markdown",
    )
    for group, line in ENTRY_POINTS.items():
        check(f"[{group}]\n{line}" in entry_points, f"entry point [{group}] {line}")


def twine_check(uv: str, python: str, work: Path, dists: list[Path]) -> None:
    step("twine check --strict (in a venv of its own)")
    venv = work / "twine-venv"
    run([uv, "venv", "--quiet", "--python", python, str(venv)])
    vpy = str(venv / "bin" / "python")
    run([uv, "pip", "install", "--quiet", "--python", vpy, "-c", CONSTRAINTS, "twine"])
    twine = [str(venv / "bin" / "twine"), "check", "--strict", *map(str, dists)]
    out = run(twine, env={**os.environ, "NO_COLOR": "1"}).stdout
    print("   " + out.strip().replace("\n", "\n   "))
    ok("twine check passed")


def install_clean(uv: str, python: str, work: Path, wheel: Path) -> Path:
    step("install the wheel into a clean venv with -c constraints.txt")
    venv = work / "venv"
    run([uv, "venv", "--quiet", "--python", python, str(venv)])
    vpy = venv / "bin" / "python"
    t0 = time.monotonic()
    run([uv, "pip", "install", "--quiet", "--python", str(vpy), "-c", CONSTRAINTS, str(wheel)])
    ok(f"installed in {time.monotonic() - t0:.1f} s")
    run([uv, "pip", "check", "--python", str(vpy)])
    ok("uv pip check: dependencies consistent")
    where = run([str(vpy), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=work).stdout
    check(str(venv) in where, f"{PACKAGE} imports from the venv, not the source tree")
    return venv


def check_cli(venv: Path, env: dict[str, str], work: Path, version: str) -> None:
    step("airflow providers list / hooks, voxsms-emulator --help, pytest plugin module")
    airflow = str(venv / "bin" / "airflow")
    providers = json.loads(run([airflow, "providers", "list", "-o", "json"], env=env).stdout)
    ours = [p for p in providers if p["package_name"] == DIST_NAME]
    check(len(ours) == 1 and ours[0]["version"] == version, f"providers list: {ours}")
    hooks = json.loads(run([airflow, "providers", "hooks", "-o", "json"], env=env).stdout)
    vox = [h for h in hooks if h.get("connection_type") == "voximplant"]
    check(
        len(vox) == 1 and vox[0]["class"] == f"{PACKAGE}.hooks.voximplant.VoximplantHook",
        "providers hooks: connection type voximplant -> VoximplantHook",
    )
    helptext = run([str(venv / "bin" / "voxsms-emulator"), "--help"], env=env).stdout
    check("--latency-ms" in helptext and "--tls" in helptext, "voxsms-emulator --help")
    code = (
        "import importlib.metadata as m, importlib.util as u\n"
        "[ep] = [e for e in m.entry_points(group='pytest11') if e.name == 'voxsms']\n"
        "assert u.find_spec(ep.value), ep\n"
        "print(ep.value)"
    )
    out = run([str(venv / "bin" / "python"), "-c", code], env=env, cwd=work).stdout.strip()
    check(out == f"{PACKAGE}.testing.pytest_plugin", f"pytest11 entry point resolves to {out}")


@contextmanager
def emulator(venv: Path, env: dict[str, str], state_dir: Path, *extra: str) -> Iterator[dict]:
    """Start ``voxsms-emulator`` on a free port in its own process group; yield its connection."""
    cmd = [str(venv / "bin" / "voxsms-emulator"), "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--state-dir", str(state_dir), *extra]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        conn = ca = None
        while conn is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise CheckFailed("the emulator printed no connection in 60 s") from None
            if line is None:
                raise CheckFailed(f"the emulator exited {proc.wait()}:\n{''.join(seen)}")
            seen.append(line)
            if line.startswith("trust this CA"):
                ca = line.rsplit(": ", 1)[1].strip()
            if line.startswith("AIRFLOW_CONN_VOXIMPLANT_DEFAULT="):
                conn = json.loads(line.split("=", 1)[1].strip().strip("'"))
        if ca:
            conn["extra"] = json.dumps({"ca_bundle": ca})
        ok(f"emulator (pid {proc.pid}) at {conn['host']}")
        yield conn
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the emulator's process group, SIGKILL it after 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    ok(
        f"emulator stopped (exit {proc.returncode}; -15: SIGTERM, re-raised by uvicorn after its shutdown)"
    )


ROUND_TRIP = """
import json, sys
from airflow_provider_voxsms.hooks.voximplant import VoximplantHook
numbers, send = json.loads(sys.argv[1]), sys.argv[2] == "send"
hook = VoximplantHook()
good, message = hook.test_connection()
assert good, message
out = {"test_connection": message}
if send:
    answer = hook.a2p_send_sms(src_number=sys.argv[3], dst_numbers=numbers, text="make dist check")
    out.update(result=answer.result, failed=answer.failed, fragments=answer.fragments_count)
print(json.dumps(out))
"""


def round_trips(venv: Path, env: dict[str, str], work: Path) -> None:
    step("hook round trip against voxsms-emulator (HTTP)")
    python = str(venv / "bin" / "python")
    with emulator(venv, env, work / "emulator") as conn:
        run_env = {**env, "AIRFLOW_CONN_VOXIMPLANT_DEFAULT": json.dumps(conn)}
        out = run(
            [python, "-c", ROUND_TRIP, json.dumps(NUMBERS), "send", SENDER], env=run_env, cwd=work
        )
        answer = json.loads(out.stdout.strip().splitlines()[-1])
        check(answer["test_connection"].startswith("Connected"), answer["test_connection"])
        accepted = sorted(r.get("destination_number") for r in answer["result"])
        check(
            accepted == NUMBERS and not answer["failed"] and answer["fragments"] == 1,
            f"a2p_send_sms accepted {accepted}, failed {answer['failed']}",
        )
        url = conn["host"].removesuffix("/platform_api") + "/_emulator/messages"
        with urllib.request.urlopen(url, timeout=10) as resp:
            messages = json.load(resp)
        got = sorted(m.get("destination_number") for m in messages)
        check(got == NUMBERS, f"the emulator holds exactly those messages: {got}")
        cli_env = {**run_env, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
        airflow = str(venv / "bin" / "airflow")
        out = run([airflow, "connections", "test", "voximplant_default"], env=cli_env, cwd=work)
        check("Connection success!" in out.stdout, "airflow connections test voximplant_default")

    step("hook round trip against voxsms-emulator --tls (ca_bundle extra)")
    with emulator(venv, env, work / "emulator-tls", "--tls") as conn:
        check("ca_bundle" in conn.get("extra", ""), "the emulator printed its CA")
        run_env = {**env, "AIRFLOW_CONN_VOXIMPLANT_DEFAULT": json.dumps(conn)}
        out = run([python, "-c", ROUND_TRIP, "[]", "no-send", SENDER], env=run_env, cwd=work)
        answer = json.loads(out.stdout.strip().splitlines()[-1])
        check(answer["test_connection"].startswith("Connected"), answer["test_connection"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--uv", default=shutil.which("uv") or "uv")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--out-dir", default=str(ROOT / "build" / "dist"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary venvs")
    args = parser.parse_args()
    # A SIGTERM (make interrupted, CI timeout) unwinds like Ctrl-C, so the emulator is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="voxsms-dist-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("AIRFLOW_CONN_VOXIMPLANT_DEFAULT", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    try:
        version = source_version()
        tracked = tracked_package_files()
        sdist, wheel = build(args.uv, args.python, Path(args.out_dir))
        check_sdist(sdist, tracked)
        check_wheel(wheel, tracked, version)
        twine_check(args.uv, args.python, work, [sdist, wheel])
        venv = install_clean(args.uv, args.python, work, wheel)
        check_cli(venv, env, work, version)
        round_trips(venv, env, work)
    except CheckFailed as err:
        print(f"\nmake dist: FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"\nmake dist: ok in {elapsed:.0f} s: {sdist.name} and {wheel.name} in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
