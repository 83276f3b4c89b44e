# Two commands on a fresh machine: `make demo` and `make test`.
# Both install from the lock (requirements/test.txt, exact versions with hashes); `make lock`
# compiles it again from pyproject.toml's ranges, each pin at the newest version they allow.
# `make test-latest` runs the suite on the newest versions those ranges allow, `make test-oldest`
# the server's tests on the lowest ones.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
LOCK = requirements/test.txt
OLDEST_LOCK = requirements/oldest.txt
LATEST_VENV = .venv-latest
OLDEST_VENV = .venv-oldest
COMPILE = $(BIN)/uv pip compile --quiet --upgrade --universal --generate-hashes --python-version 3.11

.PHONY: install demo test checks lint typecheck unit node system soak bench docs docs-serve lock test-latest test-uvloop test-oldest clean

# The project itself is installed without build isolation, so that its build backend is the
# locked setuptools too.
$(BIN)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

# Two users stream a run over a few tabs; then every production scenario runs against a fresh
# server, with the table printed and the reports written to reports/.
demo: install
	@echo "browser demo: .venv/bin/wsguard serve --dev, then open http://127.0.0.1:8765/demo in several tabs"
	$(BIN)/python -m wsguard.demo
	$(BIN)/wsguard leakcheck --profile demo --report-dir reports

test: install
	$(MAKE) checks

# ruff, mypy --strict, pytest and Node's tests in the environment $(VENV), whatever installed it.
checks: lint typecheck unit node

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck:
	$(BIN)/mypy

# Every server the tests start runs on asyncio and parses HTTP with h11, what a plain install
# runs (`make test-uvloop` runs them on uvloop and httptools).
unit:
	WSGUARD_LOOP=asyncio WSGUARD_HTTP=h11 $(BIN)/pytest

# Unit tests of the browser client's reconnect and de-duplication logic (Node's own runner).
node:
	@if command -v node >/dev/null; then node --test src/wsguard/browser/test/; \
	elif [ -n "$$WSGUARD_REQUIRE_NODE" ]; then echo "node is required (WSGUARD_REQUIRE_NODE is set)" >&2; exit 1; \
	else echo "skipped the browser client's unit tests: install Node.js 20+ to run them"; fi

# Redis, three instances and nginx (deploy/nginx.conf), with Chromium tabs, Python clients and a
# publisher through a rolling restart; part of `make test` too.
system: install
	$(BIN)/pytest tests/system -s

# Long floods and soaks (pytest marker `soak`), left out of `make test`.
soak: install
	$(BIN)/pytest -m soak -s

bench: install
	$(BIN)/python bench/run.py

# `wsguard serve --workers 2` against one process on the same private Redis (bench/README.md).
.PHONY: bench-workers
bench-workers: install
	$(BIN)/python bench/workers.py

# The documentation site (mkdocs.yml) into site/: MkDocs in strict mode, so a broken link or
# anchor, a missing API reference or a docstring it cannot read fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The same site at http://127.0.0.1:8001, rebuilt on every change (the tutorial's app takes 8000).
docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8001

# The locks again from pyproject.toml's ranges (and requirements/*.in), newest versions first.
lock: install
	$(COMPILE) pyproject.toml requirements/tools.in --extra test --extra bench --extra docs -o $(LOCK)
	$(COMPILE) pyproject.toml requirements/tools.in --extra test -c requirements/oldest.in -o $(OLDEST_LOCK)

# The whole of `make test` on the newest versions pyproject.toml allows, in a fresh environment:
# what a user installing wsguard today gets.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[test,bench]"
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(uvicorn|starlette|websockets|redis)=='
	$(MAKE) checks VENV=$(LATEST_VENV)

# The transport, server, client and Redis tests on the lowest supported uvicorn, Starlette,
# websockets and redis-py (requirements/oldest.in); every server on asyncio and httptools.
$(OLDEST_VENV)/.installed: $(OLDEST_LOCK) pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --require-hashes -r $(OLDEST_LOCK)
	$(OLDEST_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The transport, server, client and Redis tests and the leak harness's verdict with every server
# on uvloop and httptools, which `--loop auto` and `--http auto` (the defaults) take wherever
# they are installed; CI runs it.
test-uvloop: install
	WSGUARD_LOOP=uvloop WSGUARD_HTTP=httptools $(BIN)/pytest tests/transport tests/server tests/client tests/redis \
		"tests/leaktest/test_catches_leaks.py::test_real_server_passes_in_ci_profile[1]"

test-oldest: $(OLDEST_VENV)/.installed
	WSGUARD_LOOP=asyncio WSGUARD_HTTP=httptools $(OLDEST_VENV)/bin/pytest tests/transport tests/server tests/client tests/redis

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(OLDEST_VENV) reports .mypy_cache .ruff_cache .hypothesis
