# kaizen-stream: `make up` runs everything on this machine, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test unit dev lint typecheck compose-check kafka-jars bench clean

# Apache Kafka's jars (kafka/pom.xml) live in a cache outside the repo, shared by every clone;
# workers/broker/apache.py finds them there (or in $KAIZEN_KAFKA_LIBS).
KAFKA_LIBS ?= $(or $(KAIZEN_KAFKA_LIBS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kaizen-stream/kafka-4.1.1)
export KAIZEN_KAFKA_LIBS := $(KAFKA_LIBS)
# The broker the suite runs on: kafka (Apache Kafka, the default) or tansu (the embedded broker).
KAIZEN_TEST_BROKER ?= kafka

$(STAMP): pyproject.toml hatch_build.py $(wildcard workers/*/_c*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)

up: $(STAMP)
	$(BIN)/kaizen-stream up

# Merge conflict markers are caught here too: one once reached main inside docs/.
lint: $(STAMP)
	$(BIN)/ruff check workers tests bench
	$(BIN)/ruff format --check workers tests bench
	@if grep -rInE '^(<<<<<<<|>>>>>>>)( |$$)' --exclude-dir=.git --exclude-dir=.venv .; then \
	  echo "lint: merge conflict markers left in the files above" >&2; exit 1; fi

typecheck: $(STAMP)
	$(BIN)/mypy

compose-check:
	bash .ci/compose-check

# Fetched again only when kafka/pom.xml changes (its hash names the stamp); into a temporary
# directory first, so a broker started meanwhile from the cache never sees half a copy.
kafka-jars:
	@sum=$$(sha1sum kafka/pom.xml | cut -c1-12); \
	[ -e "$(KAFKA_LIBS)/.pom-$$sum" ] && exit 0; \
	if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	  echo "make: the Apache Kafka tests need Java 17+ and Maven (e.g. apt-get install openjdk-17-jre-headless maven); without them run the suite on the embedded broker: make test KAIZEN_TEST_BROKER=tansu" >&2; \
	  exit 1; \
	fi; \
	echo "fetching Apache Kafka's jars into $(KAFKA_LIBS)"; \
	tmp="$(KAFKA_LIBS).tmp$$$$"; \
	mvn -q -B -Dstyle.color=never -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$$tmp" \
	  && touch "$$tmp/.pom-$$sum" && rm -rf "$(KAFKA_LIBS)" && mv "$$tmp" "$(KAFKA_LIBS)"

# The whole suite on Apache Kafka, then the embedded broker's own tests on it, then the
# pure-Python fallbacks of the C speed-ups again (what an image without a compiler runs;
# docs/DEVELOPING.md, "Speed-ups"). KAIZEN_TEST_BROKER=tansu runs everything on the
# embedded broker instead (no Java needed).
ifeq ($(KAIZEN_TEST_BROKER),tansu)
test: $(STAMP) lint typecheck compose-check
	KAIZEN_TEST_BROKER=tansu $(BIN)/pytest -q
else
test: $(STAMP) lint typecheck compose-check kafka-jars
	KAIZEN_TEST_BROKER=kafka $(BIN)/pytest -q -m "not tansu"
	KAIZEN_TEST_BROKER=tansu $(BIN)/pytest -q -m tansu
endif
	KAIZEN_PURE_PYTHON=1 $(BIN)/pytest -q tests/hotlog tests/ingest/test_decode.py tests/ingest/test_poison.py \
		tests/state/test_rebuild.py tests/test_speedups.py

# The tests that need no broker (seconds, no Java).
unit: $(STAMP)
	$(BIN)/pytest -q -m "not broker"

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
