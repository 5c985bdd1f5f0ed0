"""Static checks of the docker/ deployment: no Docker engine needed (none runs here).

What a broken edit to docker/ would otherwise only show at ``docker compose up``:

* docker-compose.yaml is valid YAML and valid under the Compose Specification JSON schema.
  ``compose-spec.json`` beside this file is the official schema (compose-spec/compose-spec,
  Apache-2.0, licence in ``LICENSE.compose-spec``), copied unmodified from the copy vendored in
  the PyPI package check-jsonschema 0.39.0 (``check_jsonschema/builtin_schemas/vendor/``,
  sha256 d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64). To refresh it:
  ``pip download --no-deps check-jsonschema`` and copy those two files again.
* every path it names exists: build context, Dockerfile, bind mounts, env files; the
  Dockerfile's COPY sources exist and are let through Dockerfile.dockerignore.
* the image: FROM tag = the apache-airflow pin in constraints.txt (and its Python version).
* every Airflow service command, and the ``airflow ...`` healthchecks, are real Airflow CLI
  commands, asked of the Airflow CLI parser of this venv in one subprocess that also loads the
  compose file's AIRFLOW__* settings.
* each AIRFLOW__SECTION__KEY is a current (not deprecated, not misspelt) Airflow option.
* the AIRFLOW_CONN_* values parse as Airflow connections that agree with the rest of the file
  (emulator volume and key file, the voxsms database made by the init SQL, service names).
* workers can be scaled: no container_name, no host ports.
* every Airflow service reads docker/airflow.env (``env_file``), the settings the Celery cluster
  test (tests/cluster) starts its components with, and overrides none of them.

Celery commands and [celery] options come from apache-airflow-providers-celery: when it is not
installed in the test venv those checks are skipped (the image ships it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from shared_settings import SHARED_SETTINGS, read_env_file

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
# Services run through the image's /entrypoint, which turns `command` into `airflow <command>`.
AIRFLOW_SERVICES = sorted(
    name
    for name, svc in SERVICES.items()
    if name.startswith("airflow-") and "entrypoint" not in svc
)
EMULATOR = SERVICES["voxsms-emulator"]
CELERY_INSTALLED = importlib.util.find_spec("airflow.providers.celery") is not None
NO_CELERY = "apache-airflow-providers-celery is not installed in the test venv"

_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$, with ``env`` (empty: defaults)."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, op, default = m.group("name"), m.group("op"), m.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def env_files(svc: dict) -> list[dict]:
    """A service's ``env_file`` entries in long syntax (``{"path": ..., "required": ...}``)."""
    entries = svc.get("env_file", [])
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [{"path": e} if isinstance(e, str) else e for e in entries]


def service_env(name: str) -> dict[str, str]:
    """What the container gets: its env files in order, then ``environment``, which wins."""
    merged: dict[str, str] = {}
    for entry in env_files(SERVICES[name]):
        path = DOCKER / interpolate(entry["path"])
        if path.is_file():
            merged.update(read_env_file(path))
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    merged.update({k: interpolate(str(v)) for k, v in env.items()})
    return merged


COMMON_ENV = service_env("airflow-scheduler")


def command_argv(svc: dict) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def parse_volume(spec: str | dict) -> tuple[str, str, bool]:
    """(source, target, read_only) of a service volume in short or long syntax."""
    if isinstance(spec, dict):
        return spec.get("source", ""), spec["target"], bool(spec.get("read_only"))
    parts = spec.split(":")
    source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    return source, target, len(parts) > 2 and "ro" in parts[2].split(",")


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


# -- the file itself ------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    schema = json.loads(SCHEMA_FILE.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file():
    """The vendored schema is no pushover: a misspelt service key and a bad type fail."""
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    broken = {"services": {"a": {"image": "x", "comand": "y"}, "b": {"image": "x", "ports": 8}}}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_expected_services_are_there():
    assert set(SERVICES) >= {
        "postgres",
        "redis",
        "voxsms-emulator",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    }
    assert {name: command_argv(SERVICES[name]) for name in AIRFLOW_SERVICES} == {
        "airflow-apiserver": ["api-server"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-init": ["db", "migrate"],
        "airflow-scheduler": ["scheduler"],
        "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"],
    }
    assert COMMON_ENV["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_workers_can_be_scaled():
    """`--scale airflow-worker=N` fails on a fixed container name or a published host port."""
    for name, svc in SERVICES.items():
        assert "container_name" not in svc, name
    for port in SERVICES["airflow-worker"].get("ports", []):
        published = port.get("published") if isinstance(port, dict) else str(port).count(":")
        assert not published, f"airflow-worker publishes {port!r}"


def test_every_service_waits_for_what_it_uses():
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (
                    f"{name} waits for {dep}'s missing healthcheck"
                )
    for name in AIRFLOW_SERVICES:
        assert {"postgres", "redis", "voxsms-emulator"} <= set(SERVICES[name]["depends_on"]), name
        if name != "airflow-init":
            assert SERVICES[name]["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"
            }
            assert "healthcheck" in SERVICES[name], name


def test_airflow_services_use_the_settings_shared_with_the_cluster_test():
    """docker/airflow.env is what tests/cluster runs its Airflow with: every Airflow service
    must read it, and none may override one of its settings in ``environment`` (compose lets
    ``environment`` win, which would silently part the stack from the tested cluster)."""
    shared = read_env_file(SHARED_SETTINGS)
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name in AIRFLOW_SERVICES:
        paths = [(DOCKER / interpolate(e["path"])).resolve() for e in env_files(SERVICES[name])]
        assert SHARED_SETTINGS in paths, f"{name} does not read {SHARED_SETTINGS.name}"
        overridden = set(shared) & set(SERVICES[name].get("environment") or {})
        assert not overridden, f"{name} overrides shared settings {sorted(overridden)}"
        assert {k: v for k, v in service_env(name).items() if k in shared} == shared, name


def test_the_shared_settings_file_refuses_what_readers_could_read_differently(tmp_path):
    """Quotes, spaces, ``$`` and inline comments are read differently by compose and by a plain
    parser: the file may not hold them."""
    for line in ('A="x"', "A=x y", "A=${B}", "A=x #c", "a=x", "A"):
        bad = tmp_path / "bad.env"
        bad.write_text(f"# ok\n{line}\n")
        with pytest.raises(ValueError, match=r"bad\.env:2"):
            read_env_file(bad)


# -- paths ----------------------------------------------------------------------------------------


def test_referenced_paths_exist():
    for name, svc in SERVICES.items():
        build = svc.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            context = (DOCKER / interpolate(build["context"])).resolve()
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: dockerfile {dockerfile}"
            assert dockerfile == DOCKERFILE, name
        for spec in svc.get("volumes", []):
            source, _, _ = parse_volume(spec)
            source = interpolate(source)
            if is_bind(source):
                assert (DOCKER / source).resolve().exists(), f"{name}: bind mount {source}"
            else:
                assert source in (COMPOSE.get("volumes") or {}), f"{name}: volume {source}"
        for entry in env_files(svc):
            if entry.get("required", True):
                assert (DOCKER / interpolate(entry["path"])).is_file(), f"{name}: {entry}"


def test_dags_folder_is_mounted_where_airflow_looks():
    for name in AIRFLOW_SERVICES:
        mounts = {parse_volume(v)[1]: parse_volume(v)[0] for v in SERVICES[name]["volumes"]}
        assert (DOCKER / mounts["/opt/airflow/dags"]).resolve() == REPO / "dags", name


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_copies_exist_and_pass_the_dockerignore():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {ln[1:].strip("/") for ln in ignore if ln.startswith("!")}
    assert "*" in ignore, "the dockerignore is an allow-list: it starts by excluding everything"
    copies = [args for op, args in _dockerfile_instructions() if op in ("COPY", "ADD")]
    assert copies
    for args in copies:
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for src in sources:
            assert (REPO / src).exists(), f"COPY source {src} is not in the build context"
            assert src.strip("/") in allowed, f"{src} is excluded by Dockerfile.dockerignore"


def test_image_tag_matches_the_pinned_airflow():
    constraints = (REPO / "constraints.txt").read_text()
    pin = re.search(r"^apache-airflow==(\S+)$", constraints, re.M).group(1)
    python = re.search(r"--python-version (\d+\.\d+)", constraints).group(1)
    froms = [args for op, args in _dockerfile_instructions() if op == "FROM"]
    assert froms == [f"apache/airflow:{pin}-python{python}"]
    install = " ".join(args for op, args in _dockerfile_instructions() if op == "RUN")
    assert "pip install --no-cache-dir" in install
    for provider in re.findall(r"apache-airflow-providers-[a-z-]+", install):
        assert re.search(rf"^{provider}==", constraints, re.M), f"{provider} is not pinned"
    assert "--constraint /opt/voxsms-src/constraints.txt" in install
    assert _dockerfile_instructions()[-1][0] != "USER" and any(
        op == "USER" and args == "airflow" for op, args in _dockerfile_instructions()
    )


# -- Airflow CLI and configuration, asked of the real Airflow in one subprocess -------------------

_PROBE = r"""
import json, sys
from airflow.cli.cli_parser import get_parser
from airflow.configuration import conf

def walk(parser, path):
    for word in path:
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or word not in subs[0].choices:
            return None
        parser = subs[0].choices[word]
    return parser

parser = get_parser()
out = {"commands": {}, "choices": {}, "options": {}}
for path in json.loads(sys.argv[1]):
    sub = walk(parser, path)
    out["commands"][" ".join(path)] = sub is not None
    if sub is not None:
        for action in sub._actions:
            for flag in action.option_strings:
                out["choices"][" ".join(path) + " " + flag] = (
                    sorted(map(str, action.choices)) if action.choices else True
                )
for section, body in conf.configuration_description.items():
    out["options"][section] = sorted(body.get("options", {}))
print("PROBE" + json.dumps(out))
"""


def _airflow_argvs() -> list[list[str]]:
    argvs = [command_argv(SERVICES[name]) for name in AIRFLOW_SERVICES]
    for name in AIRFLOW_SERVICES:
        test = SERVICES[name].get("healthcheck", {}).get("test")
        if not test:
            continue
        line = test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])
        words = shlex.split(interpolate(line))
        if words[0] == "airflow":
            argvs.append(words[1:])
    return argvs


@pytest.fixture(scope="module")
def airflow_probe(tmp_path_factory) -> dict:
    """What the Airflow CLI parser and configuration of this venv know, under the compose env."""
    env = os.environ.copy()
    env.update({k: v for k, v in COMMON_ENV.items() if k.startswith("AIRFLOW__")})
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")  # nothing listens there: keep the test's DB
    paths = [[w for w in argv if not w.startswith("-")][:2] for argv in _airflow_argvs()]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("PROBE", 1)[1])


@pytest.mark.parametrize("argv", _airflow_argvs(), ids=shlex.join)
def test_commands_are_real_airflow_cli_commands(airflow_probe, argv):
    if argv[0] == "celery" and not CELERY_INSTALLED:
        pytest.skip(NO_CELERY)
    words = [w for w in argv if not w.startswith("-")]
    path = " ".join(words[:2])
    assert airflow_probe["commands"][path], f"`airflow {path}` is not an Airflow CLI command"
    for i, word in enumerate(argv):
        if word.startswith("-"):
            known = airflow_probe["choices"].get(f"{path} {word}")
            assert known, f"`airflow {path}` has no option {word}"
            if isinstance(known, list):
                assert argv[i + 1] in known, f"{word} {argv[i + 1]} not in {known}"


@pytest.mark.parametrize("key", sorted(k for k in COMMON_ENV if k.startswith("AIRFLOW__")))
def test_airflow_settings_are_real_options(airflow_probe, key):
    _, section, option = key.lower().split("__", 2)
    if section == "celery" and not CELERY_INSTALLED:
        pytest.skip(NO_CELERY)
    assert option in airflow_probe["options"].get(section, []), f"[{section}] {option} unknown"


def test_auth_manager_and_worker_healthcheck_modules_exist():
    auth_manager = COMMON_ENV["AIRFLOW__CORE__AUTH_MANAGER"]
    assert importlib.util.find_spec(auth_manager.rsplit(".", 1)[0]), auth_manager
    assert COMMON_ENV["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "true"
    if not CELERY_INSTALLED:
        pytest.skip(NO_CELERY)
    ping = SERVICES["airflow-worker"]["healthcheck"]["test"][1]
    app = re.search(r"--app (\S+)\.app\b", ping).group(1)
    assert importlib.util.find_spec(app), app


def test_shared_secrets_are_set_for_every_component():
    """Random per-container defaults would make workers' tokens unreadable to the API server."""
    for name in AIRFLOW_SERVICES:
        env = service_env(name)
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == COMMON_ENV["AIRFLOW__API_AUTH__JWT_SECRET"]
        assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64  # HS512 wants a 64-byte key
        assert env["AIRFLOW__API__SECRET_KEY"]
        assert env["AIRFLOW__CORE__FERNET_KEY"] == ""  # unset: no encryption, never a random one


def test_urls_point_at_services():
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW_CONN_VOXSMS_DB",
    ):
        host = re.search(r"://(?:[^@/]*@)?([^:/?]+)", COMMON_ENV[key]).group(1)
        assert host in SERVICES, f"{key}: {host} is no service"
    api = SERVICES["airflow-apiserver"]["ports"][0].split(":")[-1]
    assert COMMON_ENV["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        f"http://airflow-apiserver:{api}/execution/"
    )


# -- connections ----------------------------------------------------------------------------------


def _connection(conn_id: str, value: str):
    from airflow.models import Connection

    if value.lstrip().startswith("{"):
        return Connection.from_json(value, conn_id=conn_id)
    return Connection(conn_id=conn_id, uri=value)


def test_voximplant_connection_reads_the_emulators_key_file_over_tls():
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook, validate_base_url

    conn = _connection("voximplant_default", COMMON_ENV["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"])
    assert conn.conn_type == VoximplantHook.conn_type
    argv = command_argv(EMULATOR)
    state_dir = argv[argv.index("--state-dir") + 1]
    port = argv[argv.index("--port") + 1]
    # The hook sends its token over plain http only to this machine: the emulator, another
    # container, serves HTTPS with a certificate for the name the connection uses.
    assert "--tls" in argv
    assert argv[argv.index("--public-host") + 1] == "voxsms-emulator"
    assert conn.host == f"https://voxsms-emulator:{port}/platform_api"
    assert validate_base_url(conn.host) == conn.host
    assert conn.extra_dejson["ca_bundle"] == f"{state_dir}/tls/ca.pem"
    assert conn.extra_dejson["credentials_path"] == f"{state_dir}/credentials.json"
    # Only this connection trusts the emulator's CA: other HTTPS clients keep the public CAs.
    assert not {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"} & set(COMMON_ENV)
    assert not conn.password
    # The Airflow containers see the emulator's state volume, read-only, at the same path,
    # and run as the same user (credentials.json is mode 0600).
    emulator_mounts = {parse_volume(v)[1]: parse_volume(v)[0] for v in EMULATOR["volumes"]}
    volume = emulator_mounts[state_dir]
    assert not is_bind(volume)
    for name in AIRFLOW_SERVICES:
        mounts = [parse_volume(v) for v in SERVICES[name]["volumes"]]
        assert (volume, state_dir, True) in mounts, name
        assert SERVICES[name].get("user") == EMULATOR.get("user"), name


def test_emulator_certificate_names_the_host_the_connection_uses(tmp_path):
    """`--tls --public-host voxsms-emulator` must put that name in the server certificate."""
    from cryptography import x509

    from airflow_provider_voxsms.emulator.tls import load_or_create_tls

    argv = command_argv(EMULATOR)
    files = load_or_create_tls(tmp_path, (argv[argv.index("--public-host") + 1],))
    cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "voxsms-emulator" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)  # the healthcheck's name


def test_real_account_settings_from_env_example():
    """The commented example in .env.example, put through compose's interpolation."""
    from airflow_provider_voxsms.hooks.voximplant import VoximplantHook, validate_base_url

    example = (DOCKER / ".env.example").read_text()
    line = re.search(r"^#VOXIMPLANT_CONN='(.*)'$", example, re.M).group(1)
    dotenv = {"VOXIMPLANT_CONN": line}
    env = SERVICES["airflow-worker"]["environment"]
    conn = _connection(
        "voximplant_default", interpolate(env["AIRFLOW_CONN_VOXIMPLANT_DEFAULT"], dotenv)
    )
    assert conn.conn_type == VoximplantHook.conn_type
    assert validate_base_url(conn.host) == "https://api.voximplant.com/platform_api"
    assert set(json.loads(conn.password)) >= {"account_id", "key_id", "private_key"}
    assert "ca_bundle" not in conn.extra_dejson  # the public CAs


def test_voxsms_db_connection_is_the_database_the_init_script_creates():
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = _connection("voxsms_db", COMMON_ENV["AIRFLOW_CONN_VOXSMS_DB"])
    assert conn.conn_type == PostgresHook.conn_type
    assert conn.host == "postgres"
    pg = SERVICES["postgres"]
    init = [parse_volume(v) for v in pg["volumes"] if is_bind(parse_volume(v)[0])]
    assert [t for _, t, _ in init] == ["/docker-entrypoint-initdb.d/10-init-voxsms-db.sql"]
    sql = (DOCKER / init[0][0]).read_text()
    assert re.search(
        rf"CREATE USER {conn.login} WITH PASSWORD '{re.escape(conn.password)}';", sql
    ), sql
    assert re.search(rf"CREATE DATABASE {conn.schema} OWNER {conn.login};", sql), sql
    # The metadata database is another one, owned by the image's POSTGRES_USER.
    assert conn.schema != pg["environment"]["POSTGRES_DB"]


# -- emulator and .env ----------------------------------------------------------------------------


def test_emulator_command_is_the_packaged_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    argv = command_argv(EMULATOR)
    assert argv[0] in scripts
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert EMULATOR["entrypoint"] == ["/usr/bin/dumb-init", "--"]  # not `airflow voxsms-emulator`
    script = Path(sys.executable).with_name(argv[0])
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in (a for a in argv[1:] if a.startswith("--")):
        assert flag in proc.stdout, f"{argv[0]} has no {flag}"


def test_every_variable_is_documented_in_env_example():
    text = COMPOSE_FILE.read_text().replace("$$", "")  # $$ escapes a literal $ (shell variables)
    used = {m.group("name") for m in _VAR.finditer(text)}
    example = (DOCKER / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    assert used <= documented, used - documented
    assert ".env" in (DOCKER / ".gitignore").read_text().split()
