"""Job events: what clients are told as a job moves, through one Redis Stream per job.

Workers (and the web tier, for cancels and deletes) append events with XADD; the events endpoint reads them
with XREAD, so a client that reconnects with the last id it saw (Last-Event-ID) resumes exactly where it left
off. The stream is a convenience beside the job row, which stays the truth: when Redis is missing or down,
publishing does nothing (logged) and the endpoint falls back to what the row says.

Events, in order: ``queued`` {position} (again whenever the position changes), ``started`` {attempt, total},
``progress`` {step, total} after every denoising step, ``preview`` {step, total, images: [{index, data}]}
for jobs submitted with ``preview: true``, ``image`` {id, index, seed, url} as each image is stored, and one
final event: ``finished``, ``failed`` or ``cancelled`` {status, error}.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.urls import reverse

from config.cache import breaker_for
from image_model_domain.models import GenerationJob, JobStatus

logger = logging.getLogger(__name__)

FINAL_EVENTS = {JobStatus.SUCCEEDED: "finished", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}
FINAL_NAMES = frozenset(FINAL_EVENTS.values())
# Positions are published to this many queued jobs at most when the queue moves (the rest see theirs on connect).
POSITIONS_PUBLISHED = 500


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]
    id: str | None = None  # the stream entry id; None for an event made from the job row
    raw: str | None = None  # `data` as stored (JSON), sent as it is

    @property
    def final(self) -> bool:
        return self.name in FINAL_NAMES


def events_key(job_id: Any) -> str:
    return f"{settings.JOB_EVENTS_KEY_PREFIX}:{job_id}"


def events_enabled() -> bool:
    return bool(settings.REDIS_URL)


_client: Any = None


def _redis() -> Any:
    """The process's client for publishing (redis-py pools reconnect after a fork by themselves)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def events_publish(events: list[tuple[Any, str, dict[str, Any]]]) -> list[str]:
    """Append (job id, name, data) events in one round trip; the ids given, or [] when Redis is off or down."""
    if not events or not events_enabled():
        return []
    # While Redis is down, a publish per denoising step must not cost a connect timeout each.
    breaker = breaker_for(f"job-events:{settings.REDIS_URL}", settings.CACHE_RETRY_AFTER_S, "job events (Redis)")
    if breaker.is_open():
        return []
    try:
        pipe = _redis().pipeline(transaction=False)
        for job_id, name, data in events:
            key = events_key(job_id)
            pipe.xadd(key, {"event": name, "data": json.dumps(data)}, maxlen=settings.JOB_EVENTS_MAXLEN)
            pipe.expire(key, settings.JOB_EVENTS_TTL_S)
        replies = pipe.execute()
    except redis.RedisError as error:
        breaker.trip(error)  # logged once per outage; clients fall back to the job row
        return []
    return [reply.decode() for reply in replies[::2]]


def event_publish(job_id: Any, name: str, data: dict[str, Any]) -> str | None:
    ids = events_publish([(job_id, name, data)])
    return ids[0] if ids else None


def events_forget(job_id: Any) -> None:
    """Drop a job's events (it runs again from scratch: a retry)."""
    if not events_enabled():
        return
    try:
        _redis().delete(events_key(job_id))
    except redis.RedisError as error:
        logger.warning("job events of %s not dropped: %s", job_id, error)


def queue_position(job: GenerationJob) -> int:
    """1 for the next job a worker takes; the same order as GET /api/v1/queue/."""
    return GenerationJob.objects.filter(status=JobStatus.QUEUED, queued_at__lt=job.queued_at).count() + 1


def positions_publish(*, after: Any = None) -> None:
    """The queue moved: tell queued jobs (those queued after `after`, when given) their new positions."""
    if not events_enabled():
        return
    queued = GenerationJob.objects.filter(status=JobStatus.QUEUED).order_by("queued_at")
    ids = list(queued.values_list("pk", "queued_at")[:POSITIONS_PUBLISHED])
    events_publish(
        [
            (pk, "queued", {"position": position})
            for position, (pk, queued_at) in enumerate(ids, start=1)
            if after is None or queued_at > after
        ]
    )


def final_event(status: str, error: str) -> tuple[str, dict[str, Any]]:
    return FINAL_EVENTS[status], {"status": status, "error": error}


def image_event(image: Any) -> tuple[str, dict[str, Any]]:
    """`url` is the API path of the file; the endpoint makes it absolute for its client."""
    url = reverse("image-file", kwargs={"pk": image.pk})
    return "image", {"id": str(image.pk), "index": image.index, "seed": image.seed, "url": url}


def events_from_row(job: GenerationJob) -> list[Event]:
    """What the row says now, as events (no ids): for a client when the stream holds nothing of this job."""
    if job.status == JobStatus.QUEUED:
        return [Event("queued", {"position": queue_position(job)})]
    events = [Event("started", {"attempt": job.attempts, "total": job.progress_total})]
    if job.progress_step:
        events.append(Event("progress", {"step": job.progress_step, "total": job.progress_total}))
    if job.status == JobStatus.RUNNING:
        return events
    events += [Event(*image_event(image)) for image in job.images.order_by("index")]
    return [*events, Event(*final_event(job.status, job.error))]
