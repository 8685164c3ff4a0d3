"""gunicorn configuration of the web tier: `gunicorn -c config/gunicorn.py` (Dockerfile, compose, Kubernetes).

WEB_SERVER picks the worker class:
- `gthread` (default): WSGI, WEB_THREADS threads in each of WEB_WORKERS processes. A request mostly
  waits on PostgreSQL and Redis, so threads serve many clients per core; 2 sync workers served
  32 concurrent clients with a p99 of seconds (docs/benchmarks.md, part (e)).
- `asgi`: uvicorn workers on config.asgi (many open event streams, GET /api/v1/jobs/{id}/events/).
- `sync`: one request per process at a time; kept for comparison.
Values come from the environment through config.env, strictly: a bad one stops start-up naming it.
"""

from __future__ import annotations

import os
import sys

from config.env import env_float, env_int, env_str

WEB_SERVER = env_str("WEB_SERVER", "gthread", choices=("gthread", "asgi", "sync"))

wsgi_app = "config.asgi:application" if WEB_SERVER == "asgi" else "config.wsgi:application"
worker_class = {"gthread": "gthread", "asgi": "uvicorn_worker.UvicornWorker", "sync": "sync"}[WEB_SERVER]
bind = [env_str("WEB_BIND", "0.0.0.0:8000")]
workers = env_int("WEB_WORKERS", 2, minimum=1)
# gthread only. Each thread may hold a PostgreSQL connection (DB_CONN_MAX_AGE): workers x threads
# per web pod count against the server's max_connections. 2, not more: a submit is mostly Python
# (~9 ms of CPU), and more threads in a process share the GIL, so every request in flight slows down
# together; on 2 cores, 32 clients at 32 requests/s saw p99 38-39 ms with 2 threads, 45-79 ms with 4 and 59 ms
# with 8 (docs/benchmarks-web.md). Behind the proxy a slow client holds nginx, not a thread.
threads = env_int("WEB_THREADS", 2, minimum=1) if WEB_SERVER == "gthread" else 1
# How long a thread that computes keeps the GIL while another waits for it (Python's default: 5 ms).
# A submit is ~15 short waits on PostgreSQL and Redis; after each, its thread waits for the GIL again,
# up to the whole interval while a request in the process's other thread computes. At 1 ms the idle p99 of
# part (e) went from 36-106 ms to 30-41 ms in side-by-side runs, and 2 workers generating made no difference
# (docs/benchmarks-web.md).
gil_switch_interval_ms = env_float("WEB_GIL_SWITCH_INTERVAL_MS", 1.0, minimum=0.01)
timeout = env_int("WEB_TIMEOUT_S", 60, minimum=1)
graceful_timeout = timeout
keepalive = 5  # seconds an idle client connection stays open (behind a proxy that reuses them)
# Worker heartbeats go to a file; on a container overlay filesystem that can stall
# (gunicorn docs, "Blocking OS calls").
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
accesslog = None
errorlog = "-"


def post_worker_init(worker) -> None:  # noqa: ANN001 (gunicorn's hook signature)
    sys.setswitchinterval(gil_switch_interval_ms / 1000)
