"""/healthz: the process is up. /readyz: the database and the broker answer (503 naming what fails);
/readyz?workers=1 also wants a live worker on the default queue."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from config.celery_app import app
from image_model_domain.workers import workers_by_queue


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def check_broker() -> str | None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def check_workers(workers: dict[str, int]) -> str | None:
    queue = settings.DIFFUSION_DEFAULT_QUEUE
    if workers.get(queue):
        return None
    return f"No live worker consumes the queue {queue!r} (none seen in {settings.WORKER_HEARTBEAT_TIMEOUT_S:g} s)."


def readyz(request: HttpRequest) -> JsonResponse:
    """The web tier's readiness. With ?workers=1 (for monitors, not the web pods' own probe: a web
    pod without workers still accepts work), it also wants a live worker on the default queue."""
    checks = {"database": check_database(), "broker": check_broker()}
    workers = None
    if request.GET.get("workers") in ("1", "true", "yes"):
        try:
            workers = workers_by_queue()
        except Exception as error:  # the database check already names it
            workers, checks["workers"] = {}, f"{type(error).__name__}: {error}"
        else:
            checks["workers"] = check_workers(workers)
    failing = {name: error for name, error in checks.items() if error}
    body = {
        "status": "unavailable" if failing else "ok",
        "checks": {name: (error or "ok") for name, error in checks.items()},
        "broker": settings.CELERY_BROKER_URL.split("://", 1)[0],
    }
    if workers is not None:
        body["workers"] = workers
    return JsonResponse(body, status=503 if failing else 200)
