# The two commands: `make run` (service on SQLite with demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := scheduler

.PHONY: run test setup test-setup lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -e .

test-setup: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	bash scripts/install-test-tools.sh

run: setup
	$(BIN)/flask --app scheduler db upgrade
	$(BIN)/flask --app scheduler seed-demo
	$(BIN)/flask --app scheduler run --port $${PORT:-5000}

lint: test-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite runs in two processes (one per core of the CI machine), a test file at a time in each
# so that module fixtures (a browser, a Twilio server) are built once; PYTEST_WORKERS=0 runs it
# in one process.
PYTEST_WORKERS ?= 2

test: test-setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: test-setup
	$(BIN)/python benchmarks/availability.py
	$(BIN)/python benchmarks/booking.py
	$(BIN)/python benchmarks/history.py
