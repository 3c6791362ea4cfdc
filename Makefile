# Two commands set up everything on a fresh machine:
#   make dev    create .venv, install, migrate, run all three services (Ctrl-C stops them)
#   make test   lint, type-check and run every test against real PostgreSQL and RabbitMQ

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Compose v2 (`docker compose`) waits for healthchecks; v1 (`docker-compose`) cannot.
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_UP := $(if $(filter docker-compose,$(COMPOSE)),up --build --detach,up --build --detach --wait)

.PHONY: install system-packages browser-packages dev migrate test lint unit integration e2e chaos browser bench docs token demo \
        replay-dlq rebuild-rollups close-period up down compose-check clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python -m services.migrate

dev: migrate
	LOG_FORMAT=console $(BIN)/honcho start -f Procfile.dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian packages the tests and benchmarks drive: Chromium and its driver (browser
# tests), poppler-utils (pdftotext, pdftoppm: the printed statement), Node.js and npm
# (axe-core for the browser tests), wrk (load benchmarks). Installed when missing and
# this user may; else a warning.
# Node.js and npm count as there when `npm` runs, whoever installed them.
SYSTEM_PACKAGES := chromium chromium-driver poppler-utils wrk
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (sudo apt-get install$$missing)"; fi; \
	fi

# What the browser tests load into the page themselves (axe-core), pinned by
# tests/browser/package-lock.json; never served by billing.
BROWSER_PACKAGES := tests/browser/node_modules/.package-lock.json
$(BROWSER_PACKAGES): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

browser-packages: $(BROWSER_PACKAGES)

# Two workers: the fault tests run one after another on one of them (tests/conftest.py),
# everything else spreads over both. `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2
test: lint system-packages browser-packages
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration tests/e2e

chaos: $(STAMP)
	$(BIN)/pytest -q -m chaos

browser: $(STAMP) system-packages browser-packages
	$(BIN)/pytest -q -m browser

bench: $(STAMP) system-packages
	$(BIN)/python -m bench $(ARGS)

docs: $(STAMP)
	$(BIN)/python -m contracts.generate
	$(BIN)/python -m services.openapi

# docs/console.png and docs/statement.png: what the browser tests saw (the console with
# titles, currency and credits; the printed statement's first page), copied once they pass.
.PHONY: docs-screenshots
docs-screenshots: $(STAMP) system-packages browser-packages
	$(BIN)/pytest -q tests/browser/test_console_credits.py tests/browser/test_statement_print.py
	cp tests/browser/screenshots/console-with-credits.png docs/console.png
	cp tests/browser/screenshots/statement-page-1.png docs/statement.png

token: $(STAMP)
	@$(BIN)/python -m services.token $(COMPANY)

demo: $(STAMP)
	$(BIN)/python -m services.demo

replay-dlq: $(STAMP)
	$(BIN)/python -m services.billing.dlq $(ARGS)

rebuild-rollups: $(STAMP)
	$(BIN)/python -m services.billing.rollups.rebuild $(ARGS)

close-period: $(STAMP)
	$(BIN)/python -m services.billing.statements.close $(PERIOD)

up:
	$(COMPOSE) $(COMPOSE_UP)

down:
	$(COMPOSE) down

compose-check:
	$(COMPOSE) config -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
