"""Worker presence: which queues have a live worker. Workers write it (tasks/presence.py); readiness
and the queue read it."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from image_model_domain.models import WorkerHeartbeat


def worker_heartbeat(*, hostname: str, queues: list[str], pid: int, started_at) -> None:  # noqa: ANN001
    """Say that this worker is alive and which queues it consumes (an upsert by hostname)."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": "," + ",".join(sorted(queues)) + ",",
            "pid": pid,
            "started_at": started_at,
            "seen_at": timezone.now(),
        },
    )


def worker_forget(*, hostname: str) -> None:
    """A worker that shuts down cleanly is gone at once, not after the timeout."""
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


def workers_live() -> QuerySet[WorkerHeartbeat]:
    since = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_TIMEOUT_S)
    return WorkerHeartbeat.objects.filter(seen_at__gte=since)


def workers_by_queue() -> dict[str, int]:
    """Live workers per queue they consume."""
    counts: dict[str, int] = {}
    for row in workers_live():
        for queue in row.queue_names:
            counts[queue] = counts.get(queue, 0) + 1
    return counts
