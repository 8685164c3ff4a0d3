"""Domain functions that create, cancel, retry and delete generation jobs."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.utils import timezone

from common.exceptions import ConflictError, LimitReachedError, UnavailableError
from config.celery_app import app
from dataset_domain.images import image_check
from dataset_domain.models import Dataset
from image_model_domain.caching import job_forget
from image_model_domain.events import event_publish, events_forget, final_event, positions_publish, queue_position
from image_model_domain.models import ACTIVE_STATUSES, DLModel, GeneratedImage, GenerationJob, JobKind, JobStatus
from image_model_domain.registry import SCHEDULERS, dlmodel_default, dlmodel_get_enabled, lora_get_for_model
from image_model_domain.seeds import image_seed, random_diffusion_plan, seed_resolve
from image_model_domain.webhooks import webhook_schedule
from services.steps import denoising_steps, strength_error

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "tasks.generation.run_job"
MAX_LORAS = 2


class BrokerUnavailable(UnavailableError):
    """The job could not be handed to the queue; nothing was kept."""


class DuplicateRequest(ConflictError):
    """An idempotency key was reused with a different request body."""


def job_queue_for(model_names: list[str]) -> str:
    queues = {settings.DIFFUSION_MODEL_QUEUES.get(name) for name in model_names}
    if len(queues) == 1 and None not in queues:
        return queues.pop()
    return settings.DIFFUSION_DEFAULT_QUEUE


def job_model_names(job: GenerationJob) -> list[str]:
    if "items" in job.params:
        return sorted({item["model"] for item in job.params["items"]})
    return [job.params["model"]]


def job_reroute(*, job: GenerationJob) -> None:
    """Pick the queue from the routing in force now (a fleet may have changed since the job was made)."""
    queue = job_queue_for(job_model_names(job))
    if queue != job.queue:
        job.queue = queue
        GenerationJob.objects.filter(pk=job.pk).update(queue=queue)


def job_enqueue(*, job: GenerationJob) -> None:
    """Send the job's message once the row is committed. If the broker refuses, a new job is removed.

    Call inside the transaction that queues the job (creates, retries or re-queues it).
    """

    def publish() -> None:
        # Counted once: the 202 answer (JobOutput) reads the position published here. Published before
        # the message leaves, so that a worker's "started" can never come before "queued" on the stream.
        job.position = queue_position(job)
        event_publish(job.pk, "queued", {"position": job.position})
        try:
            app.send_task(RUN_JOB_TASK, args=[str(job.pk)], queue=job.queue, retry=True)
        except Exception as error:  # kombu raises many kinds; every one means "not queued"
            logger.error("could not enqueue job %s: %s", job.pk, error)
            if job.attempts == 0:  # a new job: keep nothing of it, neither the row, its init image nor its events
                deleted, _ = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).delete()
                if not deleted:
                    # A worker already took it beside another job (cross-job batching): it is running,
                    # so it was queued after all, and its init image is in use.
                    logger.info("job %s was claimed before its own message was sent", job.pk)
                    return
                if job.init_image:
                    job.init_image.storage.delete(job.init_image.name)
                events_forget(job.pk)
            raise BrokerUnavailable(
                f"The queue is unavailable (the message broker did not answer: {type(error).__name__}); "
                "nothing was kept, try again shortly."
            ) from error
        if job.attempts == 0:
            # Note: imported here so that workers (which re-enqueue) do not list the web tier's
            # counters on their own metrics port (tasks/metrics.py serves the default registry).
            from config.metrics import JOBS_CREATED

            JOBS_CREATED.labels(job.kind).inc()

    # Note: stamped in the caller's transaction, a few milliseconds before the message leaves once it
    # commits; stamped after the send, it was a second commit per submit (a WAL flush, ~4 ms here).
    job.enqueued_at = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(enqueued_at=job.enqueued_at)
    if job.attempts == 0:
        # Never claimed since it was made or retried, so it has no images yet: the answer lists
        # none without asking the database.
        prefetch_related_objects([job], Prefetch("images", queryset=GeneratedImage.objects.none()))
    transaction.on_commit(publish)


class QueueCapReached(LimitReachedError):
    """The submitter already has as many jobs queued or running as its cap allows."""

    retry_after_s = 10  # a queue cap frees up as the submitter's jobs finish; a few seconds is a fair first wait

    def __init__(self, *, cap: str, limit: int, active: int) -> None:
        self.cap, self.limit, self.active = cap, limit, active
        self.extra = {"cap": cap, "limit": limit, "active": active}
        super().__init__(f"You have {active} jobs queued or running; the limit is {limit} ({cap}).")


def _advisory_lock(key: str) -> None:
    """Serialise cap checks of one submitter until the transaction ends (PostgreSQL).

    Note: SQLite, the embedded default, begins every transaction IMMEDIATE (see settings), which
    already serialises all writers; it has no advisory locks and needs none.
    """
    if connection.vendor != "postgresql":
        return
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number])


def _check_queue_cap(owner: AbstractBaseUser | None, client_ip: str | None) -> None:
    """Count the submitter's active jobs under a lock held until the caller's transaction commits.

    Call inside the transaction that inserts the job: the count and the insert are then one step
    for that submitter, so concurrent submits cannot all see room for one more.
    """
    if owner is not None:
        if owner.is_staff:
            return
        cap, limit, key = "API_MAX_QUEUED_JOBS_PER_USER", settings.API_MAX_QUEUED_JOBS_PER_USER, f"user:{owner.pk}"
        jobs = GenerationJob.objects.filter(owner=owner)
    elif client_ip:
        cap, limit = "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP", settings.API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP
        key, jobs = f"ip:{client_ip}", GenerationJob.objects.filter(owner__isnull=True, client_ip=client_ip)
    else:
        return  # in-process callers (commands, benchmarks) with no client
    _advisory_lock(f"job-cap:{key}")
    active = jobs.filter(status__in=ACTIVE_STATUSES).count()
    if active >= limit:
        raise QueueCapReached(cap=cap, limit=limit, active=active)


def _request_hash(params: dict[str, Any], extra: bytes = b"") -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode() + extra).hexdigest()


def _existing_for_key(owner: AbstractBaseUser | None, key: str, request_hash: str) -> GenerationJob | None:
    if not key:
        return None
    existing = GenerationJob.objects.filter(owner=owner, idempotency_key=key).first()
    if existing is not None and existing.request_hash != request_hash:
        raise DuplicateRequest(f"The Idempotency-Key {key!r} was used with a different request.")
    return existing


def _resolve_loras(model: DLModel, loras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(loras) > MAX_LORAS:
        raise ValidationError({"loras": f"At most {MAX_LORAS} LoRA adapters per job."})
    names = [item["name"] for item in loras]
    if len(set(names)) != len(names):
        raise ValidationError({"loras": "Each LoRA may be named once."})
    resolved = []
    for item in loras:
        adapter = lora_get_for_model(name=item["name"], model=model)
        scale = item.get("scale")
        resolved.append({"name": adapter.name, "scale": adapter.default_scale if scale is None else float(scale)})
    return resolved


def generation_request(
    *,
    model_name: str | None,
    prompt: str,
    negative_prompt: str = "",
    num_images: int = 1,
    steps: int = 25,
    guidance_scale: float = 7.5,
    width: int | None = None,
    height: int | None = None,
    scheduler: str | None = None,
    loras: list[dict[str, Any]] | None = None,
    lora_scale: float = 1.0,
    strength: float | None = None,
    preview: bool = False,
) -> tuple[DLModel, dict[str, Any]]:
    """A generation request checked and with its defaults filled in; strength None: text-to-image."""
    model = dlmodel_get_enabled(name=model_name) if model_name else dlmodel_default()
    scheduler = scheduler or model.default_scheduler
    if scheduler not in SCHEDULERS:
        raise ValidationError({"scheduler": f"Unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}."})
    width = width or model.resolution
    height = height or model.resolution
    for field, value in (("width", width), ("height", height)):
        if value % 8:
            raise ValidationError({field: f"{field} must be a multiple of 8, got {value}."})
    if strength is not None and (error := strength_error(steps, strength)):
        raise ValidationError({"strength": error})
    return model, {
        "model": model.name,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "num_images": num_images,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "width": width,
        "height": height,
        "scheduler": scheduler,
        "loras": _resolve_loras(model, loras or []),
        "lora_scale": lora_scale,
        "strength": strength,
        "preview": preview,
    }


def generation_plan(*, seed: int, num_images: int) -> dict[str, Any]:
    """What a generation job adds to its validated request so the worker runs it as decided now.

    Image i's seed is the request seed + i; images run DIFFUSION_BATCH_SIZE to a batch (batching
    never changes pixels). Rows made before these keys were written are read by tasks/specs.py.
    """
    return {"batch_size": settings.DIFFUSION_BATCH_SIZE, "seeds": [image_seed(seed, i) for i in range(num_images)]}


def job_create_generation(
    *,
    owner: AbstractBaseUser | None,
    prompt: str,
    model_name: str | None = None,
    negative_prompt: str = "",
    num_images: int = 1,
    steps: int = 25,
    guidance_scale: float = 7.5,
    width: int | None = None,
    height: int | None = None,
    scheduler: str | None = None,
    seed: int | None = None,
    loras: list[dict[str, Any]] | None = None,
    lora_scale: float = 1.0,
    strength: float = 0.75,
    init_image: UploadedFile | None = None,
    idempotency_key: str = "",
    webhook_url: str = "",
    client_ip: str | None = None,
    preview: bool = False,
) -> GenerationJob:
    """Text-to-image, or image-to-image when an init image is given."""
    model, request = generation_request(
        model_name=model_name,
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_images=num_images,
        steps=steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        scheduler=scheduler,
        loras=loras,
        lora_scale=lora_scale,
        strength=strength if init_image is not None else None,
        preview=preview,
    )
    kind = JobKind.IMAGE_TO_IMAGE if init_image is not None else JobKind.TEXT_TO_IMAGE
    checked = image_check(init_image, field="init_image") if init_image is not None else None
    request_hash = _request_hash(
        {**request, "seed": seed, "webhook_url": webhook_url}, (checked.sha256 if checked else "").encode()
    )
    existing = _existing_for_key(owner, idempotency_key, request_hash)
    if existing is not None:
        return existing
    seed = seed_resolve(seed)
    params = {**request, **generation_plan(seed=seed, num_images=num_images)}
    with transaction.atomic():
        _check_queue_cap(owner, client_ip)
        job = GenerationJob(
            kind=kind,
            owner=owner,
            params=params,
            seed=seed,
            model=model,
            queue=job_queue_for([model.name]),
            images_expected=num_images,
            progress_total=denoising_steps(steps, params["strength"]) * num_images,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            webhook_url=webhook_url,
            client_ip=client_ip,
            init_image_sha256=checked.sha256 if checked else "",
        )
        if init_image is not None:
            job.init_image.save(f"{job.pk}.png", init_image, save=False)
        job.save()
        job_enqueue(job=job)
    return job


def job_create_random_diffusion(
    *,
    owner: AbstractBaseUser | None,
    dataset: Dataset,
    prompt_list: list[str],
    image_ids: list[int] | None = None,
    model_names: list[str] | None = None,
    negative_prompt: str = "",
    strength: float = 0.75,
    steps: int = 25,
    guidance_scale: float = 7.5,
    scheduler: str | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    idempotency_key: str = "",
    webhook_url: str = "",
    client_ip: str | None = None,
    preview: bool = False,
) -> GenerationJob:
    """img2img over a dataset's images, each with a prompt and a model drawn from the request seed."""
    if not prompt_list:
        raise ValidationError({"prompt_list": "Give at least one prompt."})
    images = list(dataset.images.values_list("id", flat=True))
    if image_ids:
        unknown = sorted(set(image_ids) - set(images))
        if unknown:
            raise ValidationError({"image_ids": f"Not images of dataset {dataset.name!r}: {unknown}."})
        images = sorted(set(image_ids))
    if not images:
        # A valid request the dataset's state refuses: 409, as for a taken name (api/errors.py).
        raise ValidationError(
            {"dataset": ValidationError(f"The dataset {dataset.name!r} has no images.", code="conflict")}
        )
    if model_names:
        models = [dlmodel_get_enabled(name=name, field="models").name for name in dict.fromkeys(model_names)]
    else:
        models = list(DLModel.objects.filter(enabled=True).values_list("name", flat=True))
        if not models:
            raise ValidationError({"models": "No model is enabled; register or enable one."})
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValidationError({"scheduler": f"Unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}."})
    if error := strength_error(steps, strength):
        raise ValidationError({"strength": error})
    request = {
        "dataset": dataset.pk,
        "images": images,
        "models": models,
        "prompt_list": prompt_list,
        "negative_prompt": negative_prompt,
        "strength": strength,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "scheduler": scheduler,
        "batch_size": batch_size or settings.DIFFUSION_BATCH_SIZE,
        "preview": preview,
    }
    request_hash = _request_hash({**request, "seed": seed, "webhook_url": webhook_url})
    existing = _existing_for_key(owner, idempotency_key, request_hash)
    if existing is not None:
        return existing
    resolved_seed = seed_resolve(seed)
    plan = random_diffusion_plan(seed=resolved_seed, images=images, prompts=prompt_list, models=models)
    defaults = dict(DLModel.objects.filter(name__in=models).values_list("name", "default_scheduler"))
    for item in plan:  # each image's whole recipe is decided here; the worker re-defaults nothing
        item["scheduler"] = scheduler or defaults[item["model"]]
    params = {**request, "items": plan}
    with transaction.atomic():
        _check_queue_cap(owner, client_ip)
        job = GenerationJob.objects.create(
            kind=JobKind.RANDOM_DIFFUSION,
            owner=owner,
            params=params,
            seed=resolved_seed,
            dataset=dataset,
            queue=job_queue_for(sorted({item["model"] for item in plan})),
            images_expected=len(plan),
            progress_total=denoising_steps(steps, strength) * len(plan),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            webhook_url=webhook_url,
            client_ip=client_ip,
        )
        job_enqueue(job=job)
    return job


def job_cancel(*, job: GenerationJob) -> GenerationJob:
    """A queued job is cancelled at once; a running one stops at its next denoising step.

    A finished job has nothing to cancel: a conflict (409 in the API); cancelling a cancelled job
    again changes nothing.
    """
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        message = f"The job has finished ({job.status}); nothing to cancel."
        raise ValidationError({"status": ValidationError(message, code="conflict")})
    now = timezone.now()
    if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, error="Cancelled before it started."
    ):
        webhook_schedule(job_id=job.pk)
        event_publish(job.pk, *final_event(JobStatus.CANCELLED, "Cancelled before it started."))
        positions_publish(after=job.queued_at)
    else:
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def job_retry(*, job: GenerationJob) -> GenerationJob:
    """Queue a finished (failed or cancelled) job again with the same parameters and seed."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValidationError({"status": f"Only failed or cancelled jobs can be retried; this one is {job.status}."})
    with transaction.atomic():
        job_forget(job.pk)
        events_forget(job.pk)
        for image in job.images.all():
            image_delete(image=image)
        GenerationJob.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED,
            cancel_requested=False,
            error="",
            progress_step=0,
            attempts=0,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
            worker="",
            queued_at=timezone.now(),
        )
        job.refresh_from_db()
        job_enqueue(job=job)
    return job


def image_delete(*, image: Any) -> None:
    """Remove an image row and, once committed, its file."""
    name, storage = image.file.name, image.file.storage
    job_forget(image.job_id)
    image.delete()
    transaction.on_commit(lambda: storage.delete(name))


def job_delete(*, job: GenerationJob) -> None:
    """Delete a job with its images and files; a running job is cancelled first."""
    if job.status == JobStatus.RUNNING:
        job_cancel(job=job)
    was_active = job.status in ACTIVE_STATUSES
    with transaction.atomic():
        files = [(image.file.storage, image.file.name) for image in job.images.all()]
        if job.init_image:
            files.append((job.init_image.storage, job.init_image.name))
        job_id, queued_at = job.pk, job.queued_at
        job.delete()
        job_forget(job_id)
        transaction.on_commit(lambda: [storage.delete(name) for storage, name in files])
    if was_active:  # a client watching it is told; its worker, if any, stops at its next step
        event_publish(job_id, *final_event(JobStatus.CANCELLED, "Deleted."))
        positions_publish(after=queued_at)
    else:
        events_forget(job_id)


def queue_jobs() -> QuerySet[GenerationJob]:
    """Jobs waiting or running, in the order workers take them."""
    return GenerationJob.objects.filter(status__in=ACTIVE_STATUSES).order_by("-status", "queued_at")
