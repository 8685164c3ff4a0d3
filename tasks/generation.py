"""run_job: claim a job (and any queued jobs that can share its batches), run them, record the outcomes."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_process_init
from django.conf import settings

from config.logs import current_job
from image_model_domain.lifecycle import jobs_claim
from image_model_domain.models import DLModel
from tasks import metrics
from tasks.outage import DatabaseStillDown, database_wait
from tasks.progress import pump
from tasks.running import jobs_run
from tasks.specs import engine, model_spec

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
            jobs = database_wait(
                lambda: jobs_claim(
                    job_id=job_id,
                    worker=worker,
                    batch_images=settings.DIFFUSION_BATCH_SIZE,
                    positions=pump().positions_changed,
                ),
                what="claiming the job",
            )
        except DatabaseStillDown as error:
            logger.error("%s; the message goes back to the queue", error)
            raise Reject(str(error), requeue=True) from error
        if not jobs:
            logger.info("not queued (a redelivery, cancelled, or run with another job): nothing to do")
            return "skipped"
        if len(jobs) > 1:
            logger.info("running with %s in one batch", ", ".join(str(job.pk) for job in jobs[1:]))
        logger.info("started %s", jobs[0].kind)
        runs = jobs_run(jobs)
        for job, run in zip(jobs, runs, strict=True):
            metrics.record_job(run.status, job.queue_wait_s, run.inference_s)
        metrics.record_engine(engine())
        logger.info("finished: %s", runs[0].status)
        return runs[0].status
    finally:
        current_job.reset(token)


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
        engine().preload(specs)
    except Exception:  # a bad registry row must not stop the worker; the job that needs it fails clearly
        logger.exception("preloading models failed")
