# NoteBook backend: development and test entry points.
# `make run` / `make test` install whatever is missing (Python venv, pinned pouchdb-server) first.

PYTHON ?= python3
NPM ?= npm
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
POUCHDB_SERVER := node_modules/.bin/pouchdb-server
# Extra arguments for pytest, e.g. `make test ARGS="-k notes -x"`.
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help venv node_modules deps run cluster test test-unit test-integration test-couchdb3 \
	test-external lint bench bench-couchdb3 bench-quick bench-tools bench-inprocess bench-all clean

help:
	@echo "make run               API at http://127.0.0.1:5000/graphql with one local database node"
	@echo "make cluster           the same with three replicated local database nodes"
	@echo "make test              every test (starts and stops its own database nodes)"
	@echo "make test-unit         unit tests only"
	@echo "make test-integration  integration tests only"
	@echo "make test-couchdb3     integration tests on Apache CouchDB 3.4 nodes from \$$COUCHDB3_DIST"
	@echo "                       (default ../shared/couchdb3)"
	@echo "make test-external     integration tests on your nodes: NOTEBOOK_TEST_NODES=http://u:p@host:port,..."
	@echo "make lint              ruff, mypy and the import rules (lint-imports)"
	@echo "make bench             HTTP benchmarks (gunicorn + wrk beside raw CouchDB) on pouchdb-server,"
	@echo "                       1,000 / 10,000 / 100,000 notes, replication lag, gunicorn vs granian"
	@echo "                       (docs/benchmarks.md;"
	@echo "                       ARGS=\"--sizes 1000,10000\" for fewer); installs wrk when missing"
	@echo "make bench-couchdb3    the same on Apache CouchDB 3.4 nodes from \$$COUCHDB3_DIST"
	@echo "make bench-quick       a small HTTP run (300 notes, short rounds) in under two minutes"
	@echo "make bench-inprocess   the older in-process benchmarks (scripts/bench.py, encryption on/off)"
	@echo "make bench-all         the in-process benchmarks on both servers side by side"
	@echo "make clean             remove caches AND var/: every local note of make run/cluster is deleted"
	@echo "                       (keeps .venv and node_modules)"

# Python virtualenv with the project installed editable; reinstalled only when pyproject.toml changes.
venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -e ".[test]"
	touch $@

# Pinned pouchdb-server; npm ci runs when it is missing or package-lock.json changed since the
# last install (npm records each install in node_modules/.package-lock.json).
node_modules:
	@if [ ! -e $(POUCHDB_SERVER) ] || [ ! -e node_modules/.package-lock.json ] \
	    || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	    echo "$(NPM) ci --no-audit --no-fund"; \
	    $(NPM) ci --no-audit --no-fund; \
	fi

deps: venv node_modules

# FLASK_ENV unset means production; these targets are development, and say so.
run: deps
	FLASK_ENV=development $(VENV_PY) scripts/dev_server.py

cluster: deps
	FLASK_ENV=development $(VENV_PY) scripts/dev_server.py --nodes 3

test: deps
	$(VENV_PY) run_tests.py $(ARGS)

test-unit: venv
	$(VENV_PY) run_tests.py --unit $(ARGS)

test-integration: deps
	$(VENV_PY) run_tests.py --integration $(ARGS)

# The same integration tests on real Apache CouchDB 3.4 nodes started by $(COUCHDB3_DIST)/nodes.py
# (see docs/testing.md). pouchdb-server is still installed: the dev-tool tests use it.
test-couchdb3: deps
	$(VENV_PY) run_tests.py --integration --server couchdb3 $(ARGS)

test-external: deps
	$(VENV_PY) run_tests.py --integration --server external $(ARGS)

lint: venv
	$(VENV)/bin/ruff check src config scripts tests devtools benchmarks
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

# wrk (the load generator of benchmarks/http_bench.py) from Debian, when it is not installed
bench-tools:
	@command -v wrk >/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y wrk; \
	    else sudo apt-get update && sudo apt-get install -y wrk; fi; }

bench: deps bench-tools
	$(VENV_PY) benchmarks/http_bench.py --server pouchdb $(ARGS)
	$(VENV_PY) benchmarks/http_bench.py --server pouchdb --replication
	$(VENV_PY) benchmarks/http_bench.py --server pouchdb --wsgi --sizes 1000

bench-couchdb3: deps bench-tools
	$(VENV_PY) benchmarks/http_bench.py --server couchdb3 $(ARGS)
	$(VENV_PY) benchmarks/http_bench.py --server couchdb3 --replication
	$(VENV_PY) benchmarks/http_bench.py --server couchdb3 --wsgi --sizes 1000

# small sizes and short rounds; its results go to var/, not to docs/benchmarks.md
bench-quick: deps bench-tools
	$(VENV_PY) benchmarks/http_bench.py --server pouchdb --sizes 300 --rounds 1 --seconds 2 \
	    --json var/bench-quick --out var/bench-quick/benchmarks.md
	$(VENV_PY) benchmarks/http_bench.py --server pouchdb --replication --lag-seconds 3 --staleness-trials 8 \
	    --json var/bench-quick --out var/bench-quick/benchmarks.md

bench-inprocess: deps
	$(VENV_PY) scripts/bench.py --server pouchdb $(ARGS)
	$(VENV_PY) scripts/bench_encryption.py --server pouchdb
	$(VENV_PY) scripts/bench.py --server couchdb3 $(ARGS)
	$(VENV_PY) scripts/bench_encryption.py --server couchdb3

bench-all: deps
	$(VENV_PY) scripts/bench.py --server all $(ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage .coverage.*
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	    -name __pycache__ -type d -exec rm -rf {} +
