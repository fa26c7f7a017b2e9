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

# The whole suite, then the pure-Python fallbacks of the C speed-ups again (what an image
# without a compiler runs; docs/DEVELOPING.md, "Speed-ups").
test: $(STAMP) lint typecheck compose-check
	$(BIN)/pytest -q
	KAIZEN_PURE_PYTHON=1 $(BIN)/pytest -q tests/hotlog tests/ingest/test_decode.py tests/ingest/test_poison.py \
		tests/state/test_rebuild.py tests/test_speedups.py

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
