# Two commands do everything on a fresh machine: `make run` and `make test` (three pytest workers per core, the
# longest tests first: tests/conftest.py; the tests that keep the cores busy take one slot per core between them:
# railkit/railkit_tests/load_slots.py).
# `make bench` measures the generated project against plain gunicorn.
# `make lock` refreshes every lock; `make test-newest` tries the newest releases, unlocked.
# `make starter` renders the committed starter/ (a one-click deployable project).
# FORCE=1 lets `make starter` (and `make lock`) render over local changes in starter/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR := build/run
# The default project, as `cookiecutter . --no-input` names it.
PROJECT := my-service
PACKAGE := my_service
# The project `make run` serves, rendered once and then reused: edits to it survive the next run.
RUN_PROJECT := $(RUN_DIR)/$(PROJECT)
# The port `make run` serves on (the cluster reads PORT, as on Railway).
PORT ?= 8000
# The Python the default project pins (.python-version): the machine's, pyenv's, or Debian forky's,
# which `make pythons` provisions under .cache/ (tests/pythons.py).
PROJECT_PYTHON_VERSION := $(shell $(PYTHON) -c 'import json; print(json.load(open("cookiecutter.json"))["python_version"][0])')
SDK := tests/railway/node_modules/.package-lock.json
# make test's pytest workers: three per core, as a platform test spends most of its time waiting on the servers
# it started.
TEST_WORKERS ?= $(shell echo $$(( 3 * $$(nproc) )))
# Some machines set PYTHONDONTWRITEBYTECODE: then every Python process the tests start (each server's
# master, each tool) compiled every module it imports again, 1.5 s of CPU more per server started.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-newest platform-test bench lint lock starter clean system-packages pythons

$(BIN)/python: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tests/requirements.txt
	touch $@

# redis-server (shared rate limits), postgresql and pgbouncer (the database variant's tests start their
# own server, and Railway's pooler in front of it), nginx and prometheus (what the cluster sits behind and is scraped by),
# wrk (load) and npm (Railway's SDK), from Debian's packages when missing.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Missing$$missing: install them (e.g. sudo apt-get install$$missing); tests that need them skip and say why."; \
		fi; \
	fi

# The Pythons the projects are offered on that the machine lacks (3.14 and the coming 3.15), from
# Debian's forky suite, unpacked under .cache/forky (debootstrap; about 30 s, once).
# It needs only the standard library: `make test` runs it beside the tooling venv's install.
pythons:
	$(PYTHON) -m tests.pythons

# Railway's own TypeScript SDK, pinned by tests/railway/package-lock.json.
$(SDK): tests/railway/package.json tests/railway/package-lock.json
	cd tests/railway && npm ci --silent --no-audit --no-fund

# Rendered only when missing: `make run` never deletes the project it serves.
$(RUN_PROJECT): | $(BIN)/python
	$(BIN)/cookiecutter . --no-input --output-dir $(RUN_DIR)

run: $(BIN)/python pythons | $(RUN_PROJECT)
	@echo "The project: $(RUN_PROJECT)/ (yours to edit; its code is $(PACKAGE)/, and \`make run\` reuses it: rm -rf $(RUN_PROJECT) to render the template afresh)."
	@[ -x $(RUN_PROJECT)/.venv/bin/python ] || $$($(BIN)/python -m tests.pythons --which $(PROJECT_PYTHON_VERSION)) -m venv $(RUN_PROJECT)/.venv
	$(RUN_PROJECT)/.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(RUN_PROJECT)/requirements.txt
	@echo "Serving on port $(PORT) of every interface, as on Railway: http://127.0.0.1:$(PORT)/health; Ctrl-C stops it gracefully."
	cd $(RUN_PROJECT) && PORT=$(PORT) exec .venv/bin/python -m railkit.cluster serve

# The tooling venv, the Pythons and the SDK are made side by side (mostly downloads: about 30 s of the first run).
test: system-packages
	@sdk=""; if command -v npm >/dev/null; then sdk="$(SDK)"; fi; $(MAKE) --no-print-directory -j3 $(BIN)/python pythons $$sdk
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The suite's generated projects with the newest release of every dependency, unlocked (their
# requirements*.in, upgraded): a release that breaks the template is known the day it ships.
test-newest: $(BIN)/python system-packages
	TEMPLATE_DEPENDENCIES=newest $(BIN)/python -m pytest tests/test_generation.py

# Every lock, refreshed to the newest versions its inputs allow: each project variant's
# requirements*.txt (templates/locks/), the tooling's tests/requirements.txt, the SDK's npm lock,
# and starter/'s: rendered again with the default variant's locks, or, once starter.yaml is
# deleted (a fork that edits starter/ by hand), compiled in place from starter/'s own inputs.
lock: $(BIN)/python
	$(BIN)/python -m tests.locks
	cd tests/railway && npm install --package-lock-only --no-audit --no-fund --silent
	$(BIN)/python -m tests.starter --locks $(if $(FORCE),--force)

# starter/: the default project (answers in starter.yaml), committed so a Railway template or a fork
# can deploy it without cookiecutter. A test fails when it differs from a fresh render. It refuses
# to overwrite edits made in starter/ since the last render (starter.sha256) unless FORCE=1, and
# stands down when starter.yaml is gone.
starter: $(BIN)/python
	$(BIN)/python -m tests.starter $(if $(FORCE),--force)

# The platform's suite, or part of it, on a project rendered with ANSWERS (cookiecutter key=value
# pairs), e.g. make platform-test ANSWERS="worker_class=gevent" ARGS="test_ratelimit.py -k redis".
platform-test: $(BIN)/python system-packages pythons
	$(BIN)/python -m tests.platform $(ANSWERS) -- $(ARGS)

bench: $(BIN)/python system-packages
	$(BIN)/python -m tests.bench

lint: $(BIN)/python
	$(BIN)/ruff check --config tests/ruff.toml hooks tests
	$(BIN)/ruff format --check --config tests/ruff.toml hooks tests
	$(BIN)/ruff check railkit
	$(BIN)/ruff format --check railkit

clean:
	rm -rf $(VENV) .cache .ruff_cache .pytest_cache build tests/railway/node_modules tests/railway/work
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
