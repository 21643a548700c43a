# The two quick-start commands are `make test` and `make demo`; every target first makes sure
# .venv exists and matches pyproject.toml, so a fresh clone needs nothing installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; older than pyproject.toml means the dependencies changed.
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: test demo bench lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The Kafka jars are fetched before pytest (unless a broker comes from the environment or Docker),
# so that the first test's time limit is not spent on a cold Maven download.
test: lint
	$(BIN)/chat-analytics broker fetch --if-needed
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/chat-analytics demo

# Figures go to bench/results/ (one JSON per benchmark, latest.md); BENCH_ARGS='--events 100000' for a quick run.
bench: $(STAMP)
	$(BIN)/chat-analytics broker fetch --if-needed
	$(BIN)/python -m bench $(BENCH_ARGS)

# Removes the environment and caches. Keeps the Kafka jars, the local broker's data (the events!)
# and ./data; docs/operations.md says how to wipe those too.
clean:
	@if test -x $(BIN)/chat-analytics; then $(BIN)/chat-analytics broker stop; fi
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist *.egg-info .cache/chat-analytics/ephemeral
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
