# Two commands on a fresh machine with only Python 3.11+:
#   make run    the system with a demo dataset and an admin login (embedded SQLite + filesystem broker)
#   make test   the test suite (same embedded default; .ci/run points it at PostgreSQL and Redis)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test lint screenshots bench bench-deps faults faults-short faults-hosts ci clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The admin login is printed again last, above the processes' logs. The demo
# partner's postbacks go to the app itself (DEMO's receiver): that address and
# port alone may pass the partner postback guard.
run: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py seed_demo --base-url http://127.0.0.1:$(PORT) --admin-password "$$($(BIN)/python -c 'from affise_proj.demo import admin_password; print(admin_password())')"
	@$(BIN)/python -c 'from affise_proj.demo import login_banner; print(login_banner("http://127.0.0.1:$(PORT)"))'
	PORT=$(PORT) DEMO=1 PARTNER_POSTBACK_ALLOWED_TARGETS=127.0.0.1:$(PORT) $(BIN)/honcho start -f Procfile.dev

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Benchmarks and fault tests start their own PostgreSQL (port 5440), Redis (6390),
# with BROKER=rabbitmq a RabbitMQ node (5673), and app processes on loopback, and
# stop them at the end; they need the PostgreSQL 15 binaries and redis-server
# (and rabbitmq-server for BROKER=rabbitmq); make bench also wrk (installed here
# when missing).
$(VENV)/.bench: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

bench-deps: $(VENV)/.bench
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

bench: bench-deps
	$(BIN)/python -m bench.run

# BROKER=rabbitmq: RabbitMQ carries the tasks (a private node, killed and
# started again mid-stream; it needs the rabbitmq-server package), a Redis
# beside it; the result goes to docs/faults-rabbitmq.md.
BROKER ?= redis
FAULTS_DOC := docs/faults$(if $(filter rabbitmq,$(BROKER)),-rabbitmq).md

faults: $(VENV)/.bench
	$(BIN)/python -m bench.faults --broker $(BROKER) --write $(FAULTS_DOC) \
		$(if $(filter rabbitmq,$(BROKER)),,--dashboard docs/screenshots/monitoring-dashboard.png)

faults-short: $(VENV)/.bench
	$(BIN)/python -m bench.faults --short --broker $(BROKER)

# Two app hosts (web + worker, each with its own var/ and spool) behind one
# load generator; one is SIGKILLed whole mid-stream. Result: docs/faults-hosts.md.
faults-hosts: $(VENV)/.bench
	$(BIN)/python -m bench.hosts --broker $(BROKER) --write docs/faults-hosts.md

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Refresh the operator panel screenshots in docs/ (headless Chromium).
screenshots: install
	SCREENSHOT_DIR=docs/screenshots $(BIN)/pytest tests/browser -q

ci:
	bash .ci/run

clean:
	rm -rf var/
