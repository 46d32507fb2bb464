# Two commands do everything on a fresh machine: `make run` and `make test`.
# `make bench` measures the generated project against plain gunicorn.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := build/run
# The default project, as `cookiecutter . --no-input` names it.
PROJECT := my-service
PACKAGE := my_service
# An interpreter for the Python the default project pins (.python-version), if the machine has one.
PROJECT_PYTHON_VERSION := $(shell $(PYTHON) -c 'import json; print(json.load(open("cookiecutter.json"))["python_version"][0])')
PROJECT_PYTHON := $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PROJECT_PYTHON_VERSION).*/bin/python$(PROJECT_PYTHON_VERSION)) $(shell command -v python$(PROJECT_PYTHON_VERSION)) $(PYTHON))
SDK := tests/railway/node_modules/.package-lock.json

.PHONY: run test bench lint clean system-packages

$(BIN)/python: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# redis-server (shared rate limits), wrk (load) and npm (Railway's SDK), from Debian's packages when missing.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Missing$$missing: install them (e.g. sudo apt-get install$$missing); tests that need them skip and say why."; \
		fi; \
	fi

# Railway's own TypeScript SDK, pinned by tests/railway/package-lock.json.
$(SDK): tests/railway/package.json tests/railway/package-lock.json
	cd tests/railway && npm ci --silent --no-audit --no-fund

run: $(BIN)/python
	rm -rf $(RUN_DIR)
	$(BIN)/cookiecutter . --no-input --output-dir $(RUN_DIR)
	$(PROJECT_PYTHON) -m venv $(RUN_DIR)/$(PROJECT)/.venv
	$(RUN_DIR)/$(PROJECT)/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r $(RUN_DIR)/$(PROJECT)/requirements.txt
	@echo "Serving http://127.0.0.1:8000 (try /health); Ctrl-C stops it gracefully."
	cd $(RUN_DIR)/$(PROJECT) && exec .venv/bin/python -m $(PACKAGE).cluster serve

test: $(BIN)/python system-packages lint
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(SDK); fi
	$(BIN)/python -m pytest tests

bench: $(BIN)/python system-packages
	$(BIN)/python -m tests.bench

lint: $(BIN)/python
	$(BIN)/ruff check --config tests/ruff.toml hooks tests
	$(BIN)/ruff format --check --config tests/ruff.toml hooks tests

clean:
	rm -rf $(VENV) .cache build tests/railway/node_modules tests/railway/work
