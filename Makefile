# Diffusion Server. `make run` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WORKER_QUEUES ?= diffusion,webhooks

.PHONY: run test worker beat lint format bench dev-models clean

$(VENV)/.installed: requirements.txt requirements-web.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 resolves to the CPU wheel on this machine's disk (see the README).
	$(PY) -m pip install --quiet $(if $(wildcard /opt/wheels),--find-links /opt/wheels) -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	PORT=$(PORT) PY=$(PY) bash scripts/run.sh

test: $(VENV)/.installed
	bash scripts/test_prerequisites.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

worker: $(VENV)/.installed
	$(PY) -m celery -A config worker --pool prefork --concurrency 1 --queues $(WORKER_QUEUES) --loglevel INFO

beat: $(VENV)/.installed
	$(PY) -m celery -A config beat --loglevel INFO

dev-models: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py build_dev_models --shape tiny --shape small --shape tiny-xl

bench: $(VENV)/.installed
	$(PY) -m bench.run

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.installed
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf var/db.sqlite3 var/broker var/media var/test-media var/celerybeat-schedule*
