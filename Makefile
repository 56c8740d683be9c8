# The two commands of the README: `make demo` and `make test`. Both create .venv on a fresh
# machine that has only Python 3.11, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist). Most tests wait on servers and subprocesses rather than the
# CPU, so two per core keeps a 2-core machine busy (docs/development.md has the timings).
# --dist loadgroup: a module that shares one proxy or nginx stack across its tests marks
# itself xdist_group, so it runs on one worker and starts that stack once.
PYTEST_WORKERS ?= 4
# `make demo PORT=8100 PROVIDER_PORT=8101` when 8000 or 8001 is taken.
PORT ?= 8000
PROVIDER_PORT ?= 8001
# Every package `make test` and `make demo` install, pinned, tools and build backend included:
# a release elsewhere never changes what `main` runs. `make upgrade-deps` re-resolves it.
LOCK := requirements/constraints.txt
PIP_INSTALL := $(BIN)/python -m pip install --quiet --constraint $(LOCK)

.PHONY: demo test lint typecheck unit venv clean fuzz node-deps docs upgrade-deps unasync

# A stamp, not bin/python: that is a symlink, and make reads the interpreter's own date.
$(VENV)/.bootstrapped: $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip setuptools
	touch $@

# The stamps are rebuilt whenever the project metadata or the lock changes, so `make test`
# after a pull installs what changed without a manual step. The build backend comes from the
# lock too (--no-build-isolation), instead of whatever setuptools is newest that day.
$(VENV)/.installed-runtime: pyproject.toml $(LOCK) $(VENV)/.bootstrapped
	$(PIP_INSTALL) --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(LOCK) $(VENV)/.bootstrapped
	$(PIP_INSTALL) --no-build-isolation -e '.[test]'
	touch $@ $(VENV)/.installed-runtime

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-runtime
	$(BIN)/cqrs-sso demo --port $(PORT) --provider-port $(PROVIDER_PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check cqrs_sso_middleware tests benchmarks examples scripts
	$(BIN)/ruff format --check cqrs_sso_middleware tests benchmarks examples scripts

# The sync twin of each _async module (cqrs_sso_middleware/_async/__init__.py says why);
# tests/test_generated_sync_code.py fails when one is stale.
unasync: $(VENV)/.installed-test
	$(BIN)/python scripts/generate_sync.py

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The independent OpenID provider (oidc-provider), axe-core and htmx (2 and 4) for the
# interop and browser tests. Installed only where Node.js is present; without it those tests
# skip (or fail under CI=true, where .ci/run installs what is missing). npm records what it
# installed in node_modules/.package-lock.json: installed again whenever the lock is newer.
NODE_DIR := tests/interop/provider
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		[ $(NODE_DIR)/node_modules/.package-lock.json -nt $(NODE_DIR)/package-lock.json ] || \
			(cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error); \
	else echo "npm not found: interop and browser tests will skip"; fi

# pytest exits 5 when it collects no test; make treats every non-zero status as a failure,
# so an empty run can never pass silently.
unit: $(VENV)/.installed-test node-deps
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Lint and the type check run beside the suite rather than before it (one job each); the
# line-synchronised output keeps each tool's lines whole.
test: $(VENV)/.installed-test node-deps
	$(MAKE) --no-print-directory -j3 lint typecheck unit

# A long fuzzing run with a fresh seed (make test runs 10,000 requests per driver, fixed seed).
FUZZ_REQUESTS ?= 200000
fuzz: $(VENV)/.installed-test
	FUZZ_REQUESTS=$(FUZZ_REQUESTS) FUZZ_SEED=$$(date +%s) $(BIN)/python -m pytest -q -s tests/security/test_fuzz.py

# docs/configuration.md's settings table is generated from Settings (a test checks it).
docs: $(VENV)/.installed-runtime
	$(BIN)/python -m cqrs_sso_middleware.settings_reference --write docs/configuration.md

# Every pin to its newest release that pyproject.toml's ranges allow, then the whole suite on
# them: commit requirements/constraints.txt only when this is green. uv resolves (pip-compile
# writes a non-portable file:// line for this package's extras that name each other); pip
# installs, so a fresh machine needs nothing but Python.
UV_COMPILE := $(BIN)/uv pip compile --quiet --python-version 3.11 --custom-compile-command 'make upgrade-deps'
upgrade-deps: $(VENV)/.installed-test
	$(UV_COMPILE) --upgrade --extra test -o $(LOCK) pyproject.toml requirements/installer.in
	$(MAKE) test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
