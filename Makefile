# The two commands of the README: `make demo` and `make test`. Both create .venv on a fresh
# machine that has only Python 3.11, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make demo PORT=8100 PROVIDER_PORT=8101` when 8000 or 8001 is taken.
PORT ?= 8000
PROVIDER_PORT ?= 8001

.PHONY: demo test lint typecheck unit venv clean fuzz node-deps docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp is rebuilt whenever the project metadata changes, so `make test` after a pull
# installs new dependencies without a manual step.
$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-runtime

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-runtime
	$(BIN)/cqrs-sso demo --port $(PORT) --provider-port $(PROVIDER_PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check cqrs_sso_middleware tests benchmarks examples
	$(BIN)/ruff format --check cqrs_sso_middleware tests benchmarks examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The independent OpenID provider (oidc-provider) and axe-core for the interop and browser
# tests. Installed only where Node.js is present; without it those tests skip (or fail
# under CI=true, where .ci/run installs what is missing).
NODE_DIR := tests/interop/provider
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		[ -d $(NODE_DIR)/node_modules/oidc-provider ] || (cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error); \
	else echo "npm not found: interop and browser tests will skip"; fi

# pytest exits 5 when it collects no test; make treats every non-zero status as a failure,
# so an empty run can never pass silently.
unit: $(VENV)/.installed-test node-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

# A long fuzzing run with a fresh seed (make test runs 10,000 requests per driver, fixed seed).
FUZZ_REQUESTS ?= 200000
fuzz: $(VENV)/.installed-test
	FUZZ_REQUESTS=$(FUZZ_REQUESTS) FUZZ_SEED=$$(date +%s) $(BIN)/python -m pytest -q -s tests/security/test_fuzz.py

# docs/configuration.md's settings table is generated from Settings (a test checks it).
docs: $(VENV)/.installed-runtime
	$(BIN)/python -m cqrs_sso_middleware.settings_reference --write docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
