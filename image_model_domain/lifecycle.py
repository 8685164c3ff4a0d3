"""Domain functions that the worker calls as it runs a job: claim, progress, outcome, reconcile."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from image_model_domain.events import event_publish, events_forget, events_publish, final_event, positions_publish
from image_model_domain.jobs import image_delete, job_enqueue, job_reroute
from image_model_domain.models import GenerationJob, JobKind, JobStatus
from image_model_domain.webhooks import webhook_schedule

logger = logging.getLogger(__name__)


def job_claim(*, job_id: str, worker: str) -> GenerationJob | None:
    """QUEUED -> RUNNING in one conditional UPDATE. None when another delivery got it first."""
    jobs = jobs_claim(job_id=job_id, worker=worker)
    return jobs[0] if jobs else None


def jobs_claim(
    *, job_id: str, worker: str, batch_images: int = 1, positions: Callable[[], None] = positions_publish
) -> list[GenerationJob]:
    """Claim the job and, while its images leave room in a batch of `batch_images`, the oldest queued
    jobs that can share its batches (batch_key); [] when another delivery got the job first.

    `positions` tells the jobs still queued their new positions: at once by default (up to 500 events);
    a worker hands that to its pump thread instead, so the next job's model run does not wait for it.

    The job and its companions go QUEUED -> RUNNING in one transaction; companions are locked with
    SKIP LOCKED, so two workers never take the same one. A companion's own message finds it no longer
    queued and does nothing, as any redelivery does.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(**_running(worker, now))
        if claimed:
            job = GenerationJob.objects.get(pk=job_id)
            companions = _companions(job, batch_images - job.images_expected)
            GenerationJob.objects.filter(pk__in=companions, status=JobStatus.QUEUED).update(**_running(worker, now))
    # A retry after a database blip that struck once the UPDATE had committed finds the jobs already
    # ours: one process runs one claim at a time, so RUNNING under this worker's name is this delivery.
    if not claimed:
        job = GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).first()
        if job is None:
            return []
        # The companions of that same claim only: one claim stamps one started_at on all its jobs, and
        # shares their batch key. Other jobs left RUNNING under this name (an outcome not yet recorded
        # when the database went away) are the reconciler's, not this run's.
        key = batch_key(job)
        companions = (
            list(
                GenerationJob.objects.filter(
                    status=JobStatus.RUNNING, worker=worker, started_at=job.started_at, kind=job.kind, **key
                )
                .exclude(pk=job_id)
                .values_list("pk", flat=True)
            )
            if key is not None
            else []
        )
    jobs = [job, *GenerationJob.objects.filter(pk__in=companions).order_by("queued_at")]
    for each in jobs:
        _started(each, now)
    positions()
    return jobs


def _running(worker: str, now: datetime) -> dict[str, Any]:
    return {
        "status": JobStatus.RUNNING,
        "started_at": now,
        "heartbeat_at": now,
        "worker": worker,
        "attempts": F("attempts") + 1,
        "progress_step": 0,
        "error": "",
    }


def batch_key(job: GenerationJob) -> dict[str, Any] | None:
    """What jobs must share to run in one batch: everything a pipeline call holds in common (the
    model, LoRAs and their scales, scheduler, steps, guidance, size, previews; for image-to-image
    the strength too). Prompts, negative prompts, seeds and init images are per image: the engine
    batches images of one size together, so init images of different shapes still share the call
    but run in batches of their own. None for random diffusion (one job, several models): it runs alone."""
    if job.kind not in (JobKind.TEXT_TO_IMAGE, JobKind.IMAGE_TO_IMAGE):
        return None
    fields = ("model", "loras", "lora_scale", "scheduler", "steps", "guidance_scale", "width", "height", "preview")
    if job.kind == JobKind.IMAGE_TO_IMAGE:
        fields += ("strength",)
    if any(field not in job.params for field in fields):
        return None  # a row older than some of these keys runs alone
    return {f"params__{field}": job.params[field] for field in fields}


def _companions(job: GenerationJob, room: int) -> list[str]:
    """The oldest queued jobs of the job's queue and batch key whose images fit in `room`, locked."""
    key = batch_key(job)
    if room < 1 or key is None or not settings.DIFFUSION_CROSS_JOB_BATCHING:
        return []
    candidates = (
        GenerationJob.objects.select_for_update(skip_locked=True)
        .filter(status=JobStatus.QUEUED, queue=job.queue, kind=job.kind, images_expected__lte=room, **key)
        .exclude(pk=job.pk)
        .order_by("queued_at")
        .values_list("pk", "images_expected")[:room]
    )
    chosen = []
    for pk, images in candidates:
        if images <= room:
            chosen.append(pk)
            room -= images
    return chosen


def _started(job: GenerationJob, now: datetime) -> None:
    job.queue_wait_s = (now - (job.enqueued_at or job.queued_at)).total_seconds()
    GenerationJob.objects.filter(pk=job.pk).update(queue_wait_s=job.queue_wait_s)
    # A job re-run after its worker died starts from a clean slate.
    with transaction.atomic():
        for image in job.images.all():
            image_delete(image=image)
    if job.attempts > 1:  # the earlier attempt's events name images that are gone now
        events_forget(job.pk)
    event_publish(job.pk, "started", {"attempt": job.attempts, "total": job.progress_total})


class ProgressReporter:
    """A running job's progress and heartbeat, written at a bounded rate, and its cancel flag.

    `advance()` only counts: the denoising loop calls it every step and never waits on PostgreSQL or
    Redis. `sync()` does the I/O: it writes progress and heartbeat (every `interval_s`, and the last
    step), reads the cancel flag (one indexed primary-key lookup) and publishes a `progress` event for
    every step counted since the last sync. In a worker, a ProgressPump thread (tasks/progress.py) calls
    `sync()` while the model runs, so a cancelled job stops at the first step after the pump has seen
    the flag. `step()` is both at once, for callers without a pump.
    """

    def __init__(self, job_id: str, total: int, interval_s: float | None = None, attempt: int | None = None) -> None:
        self.job_id = job_id
        self.total = total
        self.done = 0
        self.interval_s = settings.JOB_PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self.attempt = attempt  # the claimed attempt: once the job is another attempt's, this run stops
        self.stopped = False  # seen asked to stop: cancelled, deleted, or given to another attempt
        self._last_write = 0.0
        self._last_sync = 0.0
        self._written = 0
        self._unpublished: deque[int] = deque()  # `done` after each advance, not yet published as an event
        self._sync_lock = threading.Lock()  # the pump's sync and the run's last one never overlap
        self._closed = False
        self._alive = False  # advance() was called since the last write

    def advance(self, increment: int = 1) -> bool:
        """Count steps done (0: none, the job is only waiting); False once the job has been seen asked to stop.

        Every call also says the run is alive: the heartbeat is written only after one, so a run stuck inside
        the model stops its heartbeat (and the reconciler sees it) although the pump's thread goes on."""
        self._alive = True
        self.done = min(self.total, self.done + increment)
        if increment:
            self._unpublished.append(self.done)
        return not self.stopped

    def sync(self, *, last: bool = False) -> None:
        """Write progress and heartbeat when due, read the cancel flag, publish the steps counted since the last.

        `last`: the run is done with the job; a sync after it (a pump that had already taken the job up) does
        nothing, so no heartbeat or event follows the job's outcome."""
        with self._sync_lock:
            if self._closed:
                return
            self._closed = last
            done, now = self.done, time.monotonic()
            self._last_sync = now
            ours = GenerationJob.objects.filter(pk=self.job_id)
            if self.attempt is not None:
                ours = ours.filter(attempts=self.attempt)
            try:
                due = self._alive and now - self._last_write >= self.interval_s
                if due or (done >= self.total and self._written < done):
                    self._last_write, self._written, self._alive = now, done, False
                    ours.update(progress_step=done, heartbeat_at=timezone.now())
                # None: the job was deleted while running, or the reconciler gave this worker up and the job
                # is another attempt's now; either stops it as a cancel would (its late outcome is refused too).
                cancel = ours.values_list("cancel_requested", flat=True).first()
            except (OperationalError, InterfaceError) as error:
                # The database is briefly away: the job goes on; progress and the cancel flag are read
                # again at the next sync (and the outcome is recorded once the database is back).
                logger.warning("progress not recorded: %s", str(error).strip())
                connection.close()
                cancel = False
            steps = []
            while self._unpublished:  # appended to by advance() meanwhile: taken one by one, none lost
                steps.append(self._unpublished.popleft())
            if cancel is not False:
                self.stopped = True
            elif steps:
                events_publish([(self.job_id, "progress", {"step": step, "total": self.total}) for step in steps])

    def sync_due(self, now: float) -> bool:
        """Steps wait to be published, or the heartbeat is due (a job waiting for a later pipeline call)."""
        return bool(self._unpublished) or now - self._last_sync >= self.interval_s

    def step(self, increment: int = 1) -> bool:
        """advance() and sync() at once: False when the job has been asked to stop."""
        self.advance(increment)
        self.sync()
        return not self.stopped

    def preview(self, images: list[tuple[dict, bytes]]) -> None:
        """Publish previews ([(an image's meta, JPEG bytes)]) as one event, inline as data: URLs."""
        encoded = [
            {"index": meta["index"], "data": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}
            for meta, jpeg in images
        ]
        event_publish(self.job_id, "preview", {"step": self.done, "total": self.total, "images": encoded})


def job_finish(
    *, job_id: str, status: str, error: str = "", attempt: int | None = None, **timings: float | None
) -> bool:
    """RUNNING -> a final status. False if the job was no longer running (e.g. deleted).

    A worker passes the attempt it claimed: if the reconciler gave the job to another worker
    meanwhile (this one stopped answering), the late outcome does not overwrite the new attempt's.
    """
    running = GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING)
    if attempt is not None:
        running = running.filter(attempts=attempt)
    finished = running.update(
        status=status,
        finished_at=timezone.now(),
        error=error[:4000],
        **{key: value for key, value in timings.items() if value is not None},
    )
    if finished:
        event_publish(job_id, *final_event(status, error[:4000]))
        webhook_schedule(job_id=job_id)
    return bool(finished)


def jobs_reconcile(*, now=None) -> dict[str, int]:  # noqa: ANN001
    """Find jobs that nothing will finish and re-enqueue or fail them; nothing accepted is lost.

    - QUEUED long after its message was sent: the broker lost it (a Redis that keeps nothing on
      disk, a restart); send it again. A duplicate message is harmless: the claim is conditional.
    - RUNNING with no heartbeat for RECONCILE_HEARTBEAT_TIMEOUT_S: its worker died. Run it again
      while attempts remain, else fail it with the reason.
    """
    now = now or timezone.now()
    counts = {"requeued_lost": 0, "requeued_orphaned": 0, "failed_orphaned": 0}
    lost_before = now - timedelta(seconds=settings.RECONCILE_QUEUED_AFTER_S)
    lost = GenerationJob.objects.filter(status=JobStatus.QUEUED).filter(
        Q(enqueued_at__lt=lost_before) | Q(enqueued_at__isnull=True, queued_at__lt=lost_before)
    )
    for job in lost:
        with transaction.atomic():
            GenerationJob.objects.filter(pk=job.pk).update(enqueued_at=now)
            job_reroute(job=job)
            job_enqueue(job=job)
        counts["requeued_lost"] += 1

    stale_before = now - timedelta(seconds=settings.RECONCILE_HEARTBEAT_TIMEOUT_S)
    orphaned = GenerationJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    for job in orphaned:
        if job.attempts < settings.JOB_MAX_ATTEMPTS and not job.cancel_requested:
            with transaction.atomic():
                updated = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                    status=JobStatus.QUEUED,
                    enqueued_at=now,
                    worker="",
                    error=f"Worker {job.worker} stopped answering; queued again.",
                )
                if updated:
                    job_reroute(job=job)
                    job_enqueue(job=job)
                    counts["requeued_orphaned"] += 1
        else:
            reason = (
                "Cancelled; its worker stopped answering."
                if job.cancel_requested
                else f"Worker {job.worker} stopped answering {job.attempts} times; giving up."
            )
            status = JobStatus.CANCELLED if job.cancel_requested else JobStatus.FAILED
            if job_finish(job_id=job.pk, status=status, error=reason):
                counts["failed_orphaned"] += 1
    if any(counts.values()):
        logger.warning("reconciled jobs: %s", counts)
    return counts
