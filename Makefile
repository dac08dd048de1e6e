# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# How `make test` spreads the suite over processes (pytest-xdist); `make test PYTEST_PARALLEL=` runs it in one.
PYTEST_PARALLEL ?= -n 2 --dist loadfile --no-loadscope-reorder --durations=15

.PHONY: demo test test-unit lint mutation setup clean

setup: $(STAMP)

# The client distribution (./api_client, imported as tagger_client) and the server, both editable.
# --no-compile: each module is compiled when first imported; compiling all 12,000 modules of the environment
# at install costs ~50 CPU-seconds, and most of them (torch's) are never imported.
$(STAMP): pyproject.toml api_client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ./api_client -e ".[dev]"
	touch $(STAMP)

## Generate a sample archive, train on it, bulk-tag it through real Redis + worker processes.
demo: $(STAMP)
	$(BIN)/tagger demo

## The whole test suite, every tier (tests/unit, integration, system, gpu, meta), against real Redis,
## PostgreSQL and S3 started by the fixtures; Prometheus, headless Chromium, PgBouncer and ExifTool from
## Debian's packages, installed first when missing (apt-get, as root, in one call, while the virtual
## environment installs). Two pytest-xdist processes, each with its own servers and each file in one process
## (a module's fleet or site is built once); see docs/development.md, Suite time.
test:
	@$(PYTHON) -m tests.support.debian & debs=$$!; $(MAKE) --no-print-directory setup; made=$$?; wait $$debs; exit $$made
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

## The fast tier alone: pure tests in this process, no server, no process (tests/unit/conftest.py fails one
## that starts either); under a minute.
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

## Mutation testing of the fenced write, the claims and the job lifecycle (mutmut; ~10 minutes on 2 cores).
mutation: $(STAMP)
	$(BIN)/python tools/mutation.py

## Ruff, formatting, mypy, the import floors, and the manual built as a site with --strict (mkdocs.yml):
## a broken link or anchor, or a page missing from the nav, fails it.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

clean:
	rm -rf $(VENV) var .pytest_cache mutants site
