# Two commands that work on a fresh machine with Python 3.11 and access to PyPI:
#   make demo   - the nightly eval example DAG, end to end, against the bundled fake OpenAI server
#   make test   - the whole test suite (lint, unit, e2e with real Airflow dag.test())
# Both bootstrap .venv from constraints.txt (pinned versions) the first time.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3

.PHONY: venv test demo lint format bench test-deployment test-scaleout test-ui test-compat clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/pip install -q -c constraints.txt setuptools wheel
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/python example_dags/run_demo.py

test-deployment: venv
	$(BIN)/python -m tests.deployment.run_deployment

# CeleryExecutor + Postgres + Redis, two workers, two triggerers (installs postgresql/redis-server if missing)
test-scaleout: venv
	$(BIN)/python -m tests.scaleout.run_scaleout

# The "OpenAI Batches" page in headless Chromium against a real deployment (Debian's chromium, no download).
test-ui: venv
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)
	$(BIN)/python -m tests.deployment.run_ui

# The unit tests and the dag.test() subset on each Airflow 3 minor (throwaway venvs in .compat/,
# pinned by compat/constraints-airflow-3.N.txt). COMPAT_MINORS=3.0,3.3 picks some.
test-compat:
	$(PYTHON) compat/run_compat.py

bench: venv
	$(BIN)/python benchmarks/run_all.py

# Event-driven completion in a real deployment: watcher restart, webhooks (dag.test() runs no watchers).
.PHONY: test-events
test-events: venv
	$(BIN)/python -m tests.deployment.run_events

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
