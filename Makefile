# Two entry points (see README): `make demo` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed

.PHONY: demo test test-min test-ui test-cluster lint format bench clean constraints dist docs check-dist

# --compile-bytecode, as pip does by default: without .pyc files every process compiles what it
# imports, each module in one call that holds the GIL (numpy's arrayprint alone held a
# triggerer's event loop for 0.3 s on a busy machine, in the thread importing it).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt \
		-e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two pytest-xdist workers, one per core of the CI machine (`make test WORKERS=0`: one process,
# `WORKERS=auto`: one per core). Each worker has its own AIRFLOW_HOME, PostgreSQL server and
# emulators on free ports; worksteal evens out the minute-long tests. Tests marked `serial`
# time an event loop's steps to 0.1 s, which another worker's load would fail: they run after
# the others, alone. The 25 slowest tests are listed: where the suite's time goes, run by run.
WORKERS ?= 2
XDIST   := -n $(WORKERS) --dist worksteal -m "not serial"
test: lint
	$(BIN)/pytest $(XDIST) --durations=25
	$(BIN)/pytest -m serial

# The oldest supported stack: Airflow 3.2.2 and pandas 2 as of a week after that release
# (uv's --exclude-newer stands in for Airflow's constraints file) in .venv-min. It runs the
# suites whose outcome can depend on Airflow's or pandas' version (the engine, the operators
# through real DAG runs, deferral, the example DAGs, databases, XComs, lineage, task logs,
# connections), on SQLite and PostgreSQL; it skips the emulator's own suite, the fault
# injection and campaign-rule suites (the engine's behaviour, covered above on the same code),
# the demo, the bench smoke and the Docker schema check.
MIN_VENV := .venv-min
MIN_SUITES := tests/unit tests/integration tests/ledger tests/db tests/secrets tests/robustness \
	tests/dags/test_operator_dag.py tests/dags/test_delivery_report.py \
	tests/dags/test_example_dags.py tests/dags/test_streaming.py tests/dags/test_readme_examples.py \
	tests/dags/test_campaign_id.py tests/dags/test_lineage.py tests/dags/test_log_numbers.py \
	tests/dags/test_missing_connections.py tests/dags/test_null_markers.py
test-min: $(STAMP)
	$(BIN)/uv venv --quiet --allow-existing --python $(PYTHON) $(MIN_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(MIN_VENV)/bin/python \
		--exclude-newer 2026-06-05 \
		--exclude-newer-package voximplant-apiclient=2026-11-01 \
		"apache-airflow==3.2.2" "pandas<3" -e ".[test]"
	$(MIN_VENV)/bin/pytest -p no:cacheprovider $(XDIST) --durations=15 $(MIN_SUITES)
	$(MIN_VENV)/bin/pytest -p no:cacheprovider -m serial $(MIN_SUITES)

# The connection form and the campaign page in a real browser (tests/ui; CI runs it after
# `make test`): Debian's chromium, installed when missing (needs root), Playwright from the ui
# extra (never its own browser downloads), a live `airflow api-server` and the emulator;
# screenshots in build/ui/.
test-ui: $(STAMP)
	command -v chromium >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt \
		-e ".[ui]"
	$(BIN)/pytest -m ui tests/ui

# A real Celery cluster on loopback (tests/cluster; CI runs it after `make test-ui`): Debian's
# redis-server, installed when missing (needs root), one PostgreSQL server, the emulator, and
# Airflow's api-server, scheduler, dag-processor, triggerer and two Celery workers with the
# settings of docker/airflow.env. The sharded example sends 200,000 numbers while one worker
# is SIGKILLed mid-shard; every number must arrive exactly once. Then 100,000 over 8 shards,
# their eight delivery reports deferred to the one triggerer. The triggerer's log must never say
# its event loop was blocked. About 5 minutes on 2 cores.
test-cluster: $(STAMP)
	command -v redis-server >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
	$(BIN)/pytest -m cluster tests/cluster

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench

# Release checks; CI calls `make check-dist`. `make dist`: build the sdist and the wheel into
# build/dist, check their contents and metadata (twine check), install the wheel into a clean venv
# with -c constraints.txt and use it: providers list, voxsms-emulator --help, hook round trips
# against the emulator (scripts/dist_check.py). `make docs`: the Sphinx site into build/docs,
# warnings as errors, from .venv-docs (the docs extra, pinned by constraints.txt).
DOCS_VENV  := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed

dist: $(STAMP)
	$(BIN)/python scripts/dist_check.py --uv $(BIN)/uv --python $(PYTHON)

$(DOCS_STAMP): pyproject.toml constraints.txt | $(STAMP)
	$(BIN)/uv venv --quiet --clear --python $(PYTHON) $(DOCS_VENV)
	$(BIN)/uv pip install --quiet --python $(DOCS_VENV)/bin/python -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf build/docs
	$(DOCS_VENV)/bin/sphinx-build -W --keep-going -q -b html docs build/docs
	@echo "docs: build/docs/index.html"

check-dist: dist docs

# Re-pin what CI installs (run after changing dependencies in pyproject.toml).
constraints:
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra test --extra bench --extra docs \
		--extra dist --extra ui \
		--no-emit-package airflow-provider-voxsms -o constraints.txt pyproject.toml

clean:
	rm -rf $(VENV) $(MIN_VENV) $(DOCS_VENV) .demo .pytest_cache .ruff_cache build/dist build/docs
