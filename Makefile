# NemoRouter: `make run` sets up and starts the gateway; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint venv native clean lock

venv: $(STAMP)

# Every dependency, build tools and pip included, is installed from hash-pinned locks
# (requirements/*.lock, made by `make lock` from pyproject.toml's pins): a package whose file
# differs from the one locked is refused.
$(STAMP): pyproject.toml requirements/pip.lock requirements/dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/pip.lock
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# The request path's hot modules compiled with mypyc, into the venv (tools/build_native.py): redone
# only when one of their sources changed; an edited source is never shadowed by an old build
# (`serve` falls back to plain Python until this runs again; NEMO_NATIVE=0 forces plain Python).
# Optional for running the gateway (it is ~20 % less CPU per request), required by test and bench.
native: $(STAMP)
	@$(BIN)/python tools/build_native.py --if-stale

# Re-lock after changing a pin in pyproject.toml (tests/test_dependency_lock.py fails until then).
LOCK_TOOLS := .venv-lock
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install -q --disable-pip-version-check pip-tools==7.6.2
	$(LOCK_TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --extra dev --extra otel --all-build-deps -o requirements/dev.lock pyproject.toml
	$(LOCK_TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -o requirements/pip.lock requirements/pip.in

# The first answer does not wait for the compiled build (1-3 minutes): it is made in the background
# and used from the next start; serve's start line says which one runs.
run: $(STAMP)
	@$(BIN)/python tools/build_native.py --if-stale --background
	@$(BIN)/python -m compileall -q -j 0 src >/dev/null
	$(BIN)/nemorouter demo

test: native
	@# Statement tests render PDF pages to PNG with pdftoppm (Debian's poppler-utils).
	@command -v pdftoppm >/dev/null 2>&1 || { apt-get install -y -qq poppler-utils >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq poppler-utils >/dev/null 2>&1; } || \
		echo "note: pdftoppm unavailable; statement PNG rendering will be skipped"; }
	@# Console browser tests drive Debian's headless chromium through Playwright (never a browser download).
	@command -v chromium >/dev/null 2>&1 || { apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
		echo "note: chromium unavailable; the console's browser tests will be skipped"; }
	@# Real clients for tests/e2e: Claude Code, Codex CLI and the Vercel AI SDK (clients/package-lock.json
	@# pins them; their postinstall steps, which would fetch, are skipped: the platform packages
	@# already carry the binaries).
	@command -v npm >/dev/null 2>&1 || apt-get install -y -qq npm >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq npm >/dev/null 2>&1; } || \
		echo "note: npm unavailable; the Claude Code, Codex CLI and Vercel AI SDK tests will be skipped"
	@if command -v npm >/dev/null 2>&1 && ! [ clients/node_modules/.package-lock.json -nt clients/package-lock.json ]; \
		then npm ci --ignore-scripts --no-audit --no-fund --prefix clients >/dev/null; fi
	@# The sources' bytecode, written once: where PYTHONDONTWRITEBYTECODE is set (this machine sets
	@# it), every process would compile every module it imports again, ~0.3 s of each CLI command,
	@# server and simulator the suite starts (hundreds); Python still reads bytecode that exists,
	@# and recompiles (in memory) a module whose source is newer.
	@$(BIN)/python -m compileall -q -j 0 src >/dev/null
	@# Three pytest-xdist workers on this 2-core machine: much of a test's time is spent waiting on
	@# the gateways, simulators and databases it starts, so two processes still leave the cores idle
	@# part of the time (2026-12-07, 3,014 tests on a fresh clone: 10:44 with three workers, 11:01
	@# with four).
	@# A test file stays on one worker (its module fixtures are made once); the secret scan covers
	@# every worker (tests/conftest.py).
	$(BIN)/pytest -n 3 --dist loadfile

bench: native
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	@# The layers of docs/architecture.md and no import cycles (import-linter's contracts in pyproject.toml).
	cd src && ../$(BIN)/lint-imports --config ../pyproject.toml --no-cache

clean:
	rm -rf $(VENV) $(LOCK_TOOLS) build dist
