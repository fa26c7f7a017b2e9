# kaizen-stream: `make up` runs everything on this machine, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test dev lint typecheck compose-check bench clean

$(STAMP): pyproject.toml hatch_build.py $(wildcard workers/*/_c*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)

up: $(STAMP)
	$(BIN)/kaizen-stream up

lint: $(STAMP)
	$(BIN)/ruff check workers tests bench
	$(BIN)/ruff format --check workers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

compose-check:
	bash .ci/compose-check

test: $(STAMP) lint typecheck compose-check
	$(BIN)/pytest -q

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
