"""run_job: claim a job, run it through services/, record images, timings and the outcome."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings

from config.logs import current_job
from image_model_domain.lifecycle import ProgressReporter, job_claim, job_finish
from image_model_domain.models import DLModel, GenerationJob, JobStatus
from tasks import metrics
from tasks.outage import DatabaseStillDown, database_wait
from tasks.saving import ImageRecorder, SaveFailed
from tasks.specs import job_requests, model_spec, processor

logger = logging.getLogger(__name__)


@shared_task(
    name="tasks.generation.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Soft limit: the job fails with a clear error and the worker lives on. Hard limit: the pool
    # process is killed (a hung CUDA call); the reconciler then re-runs or fails the job.
    soft_time_limit=settings.JOB_SOFT_TIME_LIMIT_S,
    time_limit=settings.JOB_HARD_TIME_LIMIT_S,
)
def run_job(self: Any, job_id: str) -> str:
    token = current_job.set(str(job_id))
    try:
        worker = f"{self.request.hostname}:{os.getpid()}"
        try:
            # A database outage is waited out holding this message (see tasks/outage.py). If it lasts
            # longer than DB_OUTAGE_WAIT_S, the message goes back to the broker rather than away.
            job = database_wait(lambda: job_claim(job_id=job_id, worker=worker), what="claiming the job")
        except DatabaseStillDown as error:
            logger.error("%s; the message goes back to the queue", error)
            raise Reject(str(error), requeue=True) from error
        if job is None:
            logger.info("not queued (a redelivery, or cancelled): nothing to do")
            return "skipped"
        logger.info("started %s", job.kind)
        status = execute_job(job)
        logger.info("finished: %s", status)
        return status
    finally:
        current_job.reset(token)


def execute_job(job: GenerationJob) -> str:
    run = job_run(job)
    metrics.record_job(run.status, job.queue_wait_s, run.inference_s)
    metrics.record_engine(processor())
    return run.status


@dataclass
class JobRun:
    """How a claimed job ended, with when each batch denoised and when it was stored (perf_counter)."""

    status: str
    error: str
    inference_s: float
    batches: list[tuple[float, float]] = field(default_factory=list)
    saved: list = field(default_factory=list)


def job_run(job: GenerationJob) -> JobRun:
    """Run a claimed job to its final status; images are stored by a background saver meanwhile."""
    from services.types import Cancelled, ModelUnavailable, OutOfMemory

    recorder = ImageRecorder(job, queue_depth=settings.DIFFUSION_SAVE_QUEUE_DEPTH)
    reporter = ProgressReporter(str(job.pk), job.progress_total)
    load_s = inference_s = 0.0
    batches: list[tuple[float, float]] = []
    status, error = JobStatus.SUCCEEDED, ""
    try:
        for request in job_requests(job):
            stats = processor().generate(
                request, on_step=reporter.step, on_batch=recorder.save, on_preview=reporter.preview
            )
            load_s += stats.load_s
            inference_s += stats.inference_s
            batches += stats.batches
    except Cancelled:
        status, error = JobStatus.CANCELLED, "Cancelled while running."
    except SaveFailed as failure:
        status, error = JobStatus.FAILED, str(failure)
    except SoftTimeLimitExceeded:
        status, error = JobStatus.FAILED, f"Took longer than the {settings.JOB_SOFT_TIME_LIMIT_S} s limit."
    except (ModelUnavailable, OutOfMemory, LookupError, ValueError) as failure:
        status, error = JobStatus.FAILED, str(failure)
    except Exception as failure:  # recorded on the job; the worker lives on
        logger.exception("job %s failed", job.pk)
        status, error = JobStatus.FAILED, f"{type(failure).__name__}: {failure}"
    # Final only once every image handed to the saver is stored (or has failed to be).
    try:
        recorder.close()
    except SaveFailed as failure:
        if status == JobStatus.SUCCEEDED:
            status, error = JobStatus.FAILED, str(failure)
    # Images are written; a database blip now must not lose the outcome (the reconciler would run it again).
    if status == JobStatus.SUCCEEDED:
        database_wait(
            lambda: GenerationJob.objects.filter(pk=job.pk, attempts=job.attempts).update(
                progress_step=job.progress_total
            ),
            what="recording the final step",
        )
    database_wait(
        lambda: job_finish(
            job_id=job.pk,
            status=status,
            error=error,
            attempt=job.attempts,
            load_s=load_s,
            inference_s=inference_s,
            save_s=recorder.seconds,
        ),
        what="recording the outcome",
    )
    return JobRun(status, error, inference_s, batches, recorder.saved)


@worker_process_init.connect
def preload_models(**kwargs: Any) -> None:
    """Load `preload` checkpoints in the pool process (never in the fork parent: CUDA does not survive fork).

    Celery kills a pool process whose init outlasts worker_proc_alive_timeout, which the settings
    raise from its 4 s default for this (celery#1715).
    """
    metrics.serve(settings.WORKER_METRICS_PORT)
    if not settings.DIFFUSION_PRELOAD:
        return
    specs = [model_spec(model) for model in DLModel.objects.filter(enabled=True, preload=True)]
    if not specs:
        return
    try:
        processor().preload(specs)
    except Exception:  # a bad registry row must not stop the worker; the job that needs it fails clearly
        logger.exception("preloading models failed")
