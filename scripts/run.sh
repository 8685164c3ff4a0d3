#!/usr/bin/env bash
# `make run`: the whole service on the embedded default (SQLite and Celery's filesystem broker
# under var/, no PostgreSQL or Redis needed): migrate, load fixtures into an empty registry, build the development
# checkpoints, start a worker (with the periodic reconciler) and the web server.
set -euo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
mkdir -p var

$PY manage.py migrate --noinput
$PY manage.py loaddata_if_empty fixtures/*.json  # a registry with rows keeps its edits
$PY manage.py build_dev_models

$PY -m celery -A config worker --beat --pool prefork --concurrency 1 \
  --queues "${DIFFUSION_DEFAULT_QUEUE:-diffusion},${WEBHOOK_QUEUE:-webhooks}" \
  --schedule var/celerybeat-schedule --loglevel INFO >var/worker.log 2>&1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null; wait $WORKER_PID 2>/dev/null' EXIT INT TERM

cat <<TXT

Diffusion Server is starting on http://127.0.0.1:${PORT}/
  Web page       http://127.0.0.1:${PORT}/        (generate, random diffusion, queue, library)
  API            http://127.0.0.1:${PORT}/api/v1/
  API docs       http://127.0.0.1:${PORT}/docs   (Redoc: /redoc, schema: /api/schema/)
  Admin          http://127.0.0.1:${PORT}/admin/ (create a user: $PY manage.py createsuperuser)
  Readiness      http://127.0.0.1:${PORT}/readyz
  Worker log     var/worker.log
Try: curl -X POST http://127.0.0.1:${PORT}/api/v1/generations/ -H 'Content-Type: application/json' \\
       -d '{"prompt": "a lighthouse at dusk", "model": "tiny-sd-a", "steps": 10}'

TXT
$PY manage.py runserver "0.0.0.0:${PORT}" --noreload
