# pymem: `make demo` and `make test` do all set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pymem-installed

.PHONY: setup system venv demo test test-fast lint bench schema-snapshot docs clean

setup: system venv

system:
	@bash scripts/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,redis]'
	@touch $(STAMP)

demo: setup
	@$(BIN)/pymem demo

test: setup
	@$(BIN)/python -m pytest

test-fast: venv
	@$(BIN)/python -m pytest -m "not slow"

lint: venv
	@$(BIN)/ruff check pymem tests benchmarks scripts
	@$(BIN)/ruff format --check pymem tests benchmarks scripts
	@$(BIN)/mypy

bench: setup
	@$(BIN)/python benchmarks/run.py

schema-snapshot: setup
	@$(BIN)/python -m tests.sql.snapshot > tests/sql/expected_schema.txt

docs: setup
	@$(BIN)/python -m tests.sql.snapshot --sql-reference > docs/sql-reference.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
