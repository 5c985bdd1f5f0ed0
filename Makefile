# Two entry points (see README): `make demo` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed

.PHONY: demo test test-min lint format bench clean constraints

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

# The oldest supported stack: Airflow 3.2.2 and pandas 2 as of a week after that release
# (uv's --exclude-newer stands in for Airflow's constraints file) in .venv-min; the whole suite.
MIN_VENV := .venv-min
test-min: $(STAMP)
	$(BIN)/uv venv --quiet --python $(PYTHON) $(MIN_VENV)
	$(BIN)/uv pip install --quiet --python $(MIN_VENV)/bin/python --exclude-newer 2026-06-05 \
		--exclude-newer-package voximplant-apiclient=2026-11-01 \
		"apache-airflow==3.2.2" "pandas<3" -e ".[test]"
	$(MIN_VENV)/bin/pytest -p no:cacheprovider

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin what CI installs (run after changing dependencies in pyproject.toml).
constraints:
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra test --extra bench \
		--no-emit-package airflow-provider-voxsms -o constraints.txt pyproject.toml

clean:
	rm -rf $(VENV) $(MIN_VENV) .demo .pytest_cache .ruff_cache
