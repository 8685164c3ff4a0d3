"""run_job: claim a job, run it through services/, record images, timings and the outcome."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings

from config.logs import current_job
from dataset_domain.models import DatasetImage
from image_model_domain.lifecycle import ProgressReporter, job_claim, job_finish
from image_model_domain.models import DLModel, GenerationJob, JobKind, JobStatus
from image_model_domain.seeds import image_seed
from tasks import metrics
from tasks.outage import DatabaseStillDown, database_wait
from tasks.saving import ImageRecorder, SaveFailed
from tasks.specs import lora_specs, model_spec, processor

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
        for request in build_requests(job):
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


def build_requests(job: GenerationJob) -> list:
    """One services request per model: the job's parameters, its seeds, its source images."""

    from services.types import GenerationRequest, ImageTask

    params = job.params
    if job.kind == JobKind.RANDOM_DIFFUSION:
        models = {model.name: model for model in DLModel.objects.filter(name__in={i["model"] for i in params["items"]})}
        sources = DatasetImage.objects.in_bulk([item["source_image_id"] for item in params["items"]])
        requests = []
        for name in sorted({item["model"] for item in params["items"]}):
            model = models.get(name)
            if model is None:
                raise LookupError(f"The model {name!r} is no longer registered.")
            items = []
            for item in (i for i in params["items"] if i["model"] == name):
                source = sources.get(item["source_image_id"])
                if source is None:
                    raise LookupError(f"Source image {item['source_image_id']} was deleted from the dataset.")
                init, sha256 = _open_source(source.image, model.resolution)
                items.append(
                    ImageTask(
                        prompt=item["prompt"],
                        negative_prompt=params["negative_prompt"],
                        seed=item["seed"],
                        width=init.width,
                        height=init.height,
                        init_image=init,
                        init_image_sha256=sha256,
                        meta={"index": item["index"], "source_image_id": source.pk},
                    )
                )
            requests.append(
                GenerationRequest(
                    model=model_spec(model),
                    items=items,
                    steps=params["steps"],
                    guidance_scale=params["guidance_scale"],
                    strength=params["strength"],
                    scheduler=params["scheduler"] or model.default_scheduler,
                    batch_size=params["batch_size"],
                    preview_every=preview_every(job),
                )
            )
        return requests

    model = DLModel.objects.filter(name=params["model"]).first()
    if model is None:
        raise LookupError(f"The model {params['model']!r} is no longer registered.")
    init, sha256 = None, None
    if job.init_image:
        init, sha256 = _open_source(job.init_image, max(params["width"], params["height"]))
    width, height = (init.width, init.height) if init else (params["width"], params["height"])
    items = [
        ImageTask(
            prompt=params["prompt"],
            negative_prompt=params["negative_prompt"],
            seed=image_seed(job.seed, index),
            width=width,
            height=height,
            init_image=init,
            init_image_sha256=sha256,
            meta={"index": index},
        )
        for index in range(params["num_images"])
    ]
    return [
        GenerationRequest(
            model=model_spec(model),
            items=items,
            steps=params["steps"],
            guidance_scale=params["guidance_scale"],
            strength=params["strength"] or 0.75,
            scheduler=params["scheduler"],
            loras=lora_specs(params["loras"]),
            lora_scale=params["lora_scale"],
            batch_size=params.get("batch_size") or settings.DIFFUSION_BATCH_SIZE,
            preview_every=preview_every(job),
        )
    ]


def _open_source(field, resolution: int):  # noqa: ANN001, ANN202
    """A stored source image, ready for the model, and the SHA-256 of its file (recorded to replay it)."""
    import io

    from PIL import Image

    from services.images import prepare_source

    with field.open("rb") as handle:
        data = handle.read()
    with Image.open(io.BytesIO(data)) as image:
        return prepare_source(image, resolution), hashlib.sha256(data).hexdigest()


def preview_every(job: GenerationJob) -> int:
    return settings.PREVIEW_EVERY_STEPS if job.params.get("preview") else 0


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
