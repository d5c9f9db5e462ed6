# The two commands of the README: `make run` and `make test`. Everything else is a helper they call.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app web
STAMP := $(VENV)/.installed

.PHONY: run test lint format install translations init-db demo bench clean run-cluster stop-cluster status-cluster

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) translations

translations: $(STAMP)
	if [ -d web/translations ]; then $(BIN)/pybabel -q compile -d web/translations -f; fi

init-db: install
	$(FLASK) init-db

demo: init-db
	$(FLASK) demo

run: demo
	MYHUG_JOBS_IN_PROCESS=1 $(FLASK) run --host 127.0.0.1 --port 5000

# Two gunicorn nodes behind nginx (TLS) on PostgreSQL and Redis, one `flask jobs run`: https://127.0.0.1:8443
# (docs/deploy.md). Needs nginx, PostgreSQL and Redis on this machine; says what is missing otherwise.
run-cluster: install
	$(BIN)/python deploy/cluster.py start

stop-cluster:
	$(BIN)/python deploy/cluster.py stop

status-cluster:
	$(BIN)/python deploy/cluster.py status

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
