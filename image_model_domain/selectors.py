"""Reads of jobs, images and the queue, each in a fixed number of queries whatever the page holds.

A queued job's position is the number of queued jobs ahead of it plus one (the order workers take
them); the list reads compute it for every row in the same query as the rows, so a page of jobs
costs the same few queries whether it holds one job or a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
    prefetch_related_objects,
)

from image_model_domain.jobs import queue_jobs
from image_model_domain.models import GeneratedImage, GenerationJob, JobStatus
from image_model_domain.workers import workers_by_queue

# Seconds per denoising step are averaged over this many recently finished jobs.
ESTIMATE_FROM_RECENT = 20


def visible_to_user(user: Any, queryset: QuerySet) -> QuerySet:
    """Users see their own jobs and images, staff see all; anonymous clients see anonymous work."""
    if user.is_authenticated and user.is_staff:
        return queryset
    owner_field = "owner" if queryset.model is GenerationJob else "job__owner"
    if user.is_authenticated:
        return queryset.filter(**{owner_field: user})
    return queryset.filter(**{f"{owner_field}__isnull": True})


def with_positions(jobs: QuerySet[GenerationJob]) -> QuerySet[GenerationJob]:
    """Annotate `position`: 1 for the next job a worker takes, None unless queued (events.queue_position's rule)."""
    ahead = (
        GenerationJob.objects.filter(status=JobStatus.QUEUED, queued_at__lt=OuterRef("queued_at"))
        .order_by()
        .values(count=Func(F("pk"), function="COUNT"))
    )
    return jobs.annotate(
        position=Case(
            When(status=JobStatus.QUEUED, then=Subquery(ahead, output_field=IntegerField()) + Value(1)),
            default=None,
            output_field=IntegerField(),
        )
    )


def job_list(*, user: Any) -> QuerySet[GenerationJob]:
    """The jobs `user` may see, newest first, with what JobOutput reads: model, owner, images, position."""
    jobs = GenerationJob.objects.select_related("model", "owner").prefetch_related("images")
    return with_positions(visible_to_user(user, jobs)).order_by("-queued_at")


def image_list(*, user: Any) -> QuerySet[GeneratedImage]:
    """The images `user` may see: newest job first, a job's images by index (batches are saved in any order)."""
    return visible_to_user(user, GeneratedImage.objects.all()).order_by("-job__queued_at", "job_id", "index")


@dataclass(frozen=True)
class QueueEntry:
    job: GenerationJob
    position: int | None
    estimated_start_s: float | None
    worker_available: bool
    note: str


def seconds_per_step() -> float | None:
    """Seconds per denoising step of one image, from recent jobs: works for any steps and image counts."""
    recent = GenerationJob.objects.filter(status=JobStatus.SUCCEEDED, progress_total__gt=0).order_by("-finished_at")
    per_step = [
        (finished_at - started_at).total_seconds() / total
        for started_at, finished_at, total in recent.values_list("started_at", "finished_at", "progress_total")[
            :ESTIMATE_FROM_RECENT
        ]
        if started_at and finished_at
    ]
    return sum(per_step) / len(per_step) if per_step else None


def queue_entries(*, user: Any) -> list[QueueEntry]:
    """Running jobs, then queued ones in the order workers take them, that `user` may see.

    Every active job counts towards the estimates (the jobs ahead of yours may be anyone's); only
    the visible ones are listed. Four queries (recent timings, live workers, the queue, the listed
    jobs' images), whatever the queue's length.
    """
    per_step = seconds_per_step()
    served = workers_by_queue()
    visible = visible_to_user(user, GenerationJob.objects.filter(pk=OuterRef("pk")))
    jobs = queue_jobs().select_related("model", "owner").annotate(visible=Exists(visible))
    entries, ahead_s, position = [], 0.0, 0
    for job in jobs:
        queued = job.status == JobStatus.QUEUED
        if queued:
            position += 1
        job.position = position if queued else None  # JobOutput reads it instead of counting again
        estimate = None if per_step is None else (ahead_s if queued else 0.0)
        # A running job has a worker (or the reconciler will find it has none); a queued one waits for one.
        available = not queued or bool(served.get(job.queue))
        note = ""
        if not available:
            estimate = None
            note = f"No worker is running for the queue {job.queue!r}; the job starts when one does."
        elif estimate is None:
            note = "No finished job to estimate from yet."
        if job.visible:
            entries.append(QueueEntry(job, job.position, estimate, available, note))
        ahead_s += (per_step or 0.0) * max(job.progress_total - job.progress_step, 0)
    prefetch_related_objects([entry.job for entry in entries], "images")
    return entries
