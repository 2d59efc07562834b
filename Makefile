# Countersign developer entry points. `make` or `make help` lists them.
# The work is done by scripts/ (services.sh, with-services.sh, run.sh, test.sh); see their
# headers for the details.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

PYTEST_ARGS ?=
LOAD_ARGS ?=
# make fuzz: examples per hostile-data fuzz test, and where its tally goes (a section replaced in place).
FUZZ_EXAMPLES ?= 60
FUZZ_RESULTS ?= bench/RESULTS.md
FORCE ?=

SERVICES := bash scripts/services.sh
WITH_SERVICES := bash scripts/with-services.sh
VENV_BIN := .venv/bin

.PHONY: help deps run test fuzz faults services stop status env lint fmt shell migrate clean-dev bench load

help: ## List the targets
	@echo "Countersign: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: PYTEST_ARGS='-k foo' (test), LOAD_ARGS='--users 10' (load), PORT=8000 (run), FORCE=1 (clean-dev)"
	@echo "           FUZZ_EXAMPLES=60 FUZZ_RESULTS=bench/RESULTS.md (fuzz)"

deps: ## Install what is missing: apt packages (postgres, redis, chromium, fonts) and .venv
	@$(SERVICES) deps

run: ## Demo: services, migrate, seed_demo, then web+worker+beat (Ctrl-C stops it all)
	@$(WITH_SERVICES) --deps --name run -- bash scripts/run.sh

test: ## Run pytest against the private services (PYTEST_ARGS passes through)
	@bash scripts/test.sh $(PYTEST_ARGS)

fuzz: ## Hostile-data fuzzing (tests/hostile/test_fuzz.py) at FUZZ_EXAMPLES per entry point; tally into FUZZ_RESULTS
	@HOSTILE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HOSTILE_FUZZ_RESULTS=$(abspath $(FUZZ_RESULTS)) \
		bash scripts/test.sh tests/hostile/test_fuzz.py -q -p no:logging --timeout 3600 $(PYTEST_ARGS)

faults: ## Fault suite (tests/faults): SIGKILLs, Redis/Postgres restarts, API storms, on services of its own
	@bash scripts/faults.sh $(PYTEST_ARGS)

services: ## Start Postgres and Redis in the background (until make stop); print their env
	@$(SERVICES) deps --system
	@$(SERVICES) start
	@$(SERVICES) env

stop: ## Stop every service under .dev
	@$(SERVICES) stop --all

status: ## Show which services run, and their data and log paths
	@$(SERVICES) status

env: ## Print the export lines for the running services (eval "$(make -s env)")
	@$(SERVICES) env

lint: ## ruff check + the import layers (lint-imports) + ruff format --check
	@$(SERVICES) deps --venv
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/lint-imports
	$(VENV_BIN)/ruff format --check .

fmt: ## ruff format + ruff check --fix
	@$(SERVICES) deps --venv
	$(VENV_BIN)/ruff format .
	$(VENV_BIN)/ruff check --fix .

shell: ## Django shell with the services up and their env exported
	@$(WITH_SERVICES) --deps --name shell -- python manage.py shell

migrate: ## python manage.py migrate --noinput, with the services up
	@$(WITH_SERVICES) --deps --name migrate -- python manage.py migrate --noinput

clean-dev: ## Stop the services and delete .dev: the dev data (asks first; FORCE=1 skips)
	@$(SERVICES) clean $(if $(filter 1 y yes true,$(FORCE)),--force,)

bench: ## Run every bench/*.py benchmark with the services up (results in bench/RESULTS.md)
	@$(SERVICES) deps
	@# The peers the benchmarks compare against (LangGraph): the `bench` extra, never runtime.
	@$(VENV_BIN)/python -m pip install --disable-pip-version-check --progress-bar off -q -e '.[dev,bench]'
	@for script in bench/*.py; do case $$script in */_*|*_workflow.py) continue;; esac; \
		echo "== $$script"; $(WITH_SERVICES) --deps --name bench -- python $$script || exit 1; done

load: ## Load test (~5 min): 50 reviewers/managers on gunicorn while 200 runs execute; see docs/operations.md
	@$(WITH_SERVICES) --deps --name load -- python bench/load/run.py $(LOAD_ARGS)
