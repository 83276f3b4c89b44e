# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test lint typecheck unit node soak bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Two users stream a run over a few tabs; then every production scenario runs against a fresh
# server, with the table printed and the reports written to reports/.
demo: install
	@echo "browser demo: .venv/bin/wsguard serve --dev, then open http://127.0.0.1:8765/demo in several tabs"
	$(BIN)/python -m wsguard.demo
	$(BIN)/wsguard leakcheck --profile demo --report-dir reports

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

# Unit tests of the browser client's reconnect and de-duplication logic (Node's own runner).
node:
	@if command -v node >/dev/null; then node --test src/wsguard/browser/test/; \
	elif [ -n "$$WSGUARD_REQUIRE_NODE" ]; then echo "node is required (WSGUARD_REQUIRE_NODE is set)" >&2; exit 1; \
	else echo "skipped the browser client's unit tests: install Node.js 20+ to run them"; fi

test: lint typecheck unit node

# Long floods and soaks (pytest marker `soak`), left out of `make test`.
soak: install
	$(BIN)/pytest -m soak -s

# The benchmark's peers (python-socketio) come from the `bench` extra, installed here only.
$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .hypothesis
