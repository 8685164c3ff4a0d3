from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from kombu import Exchange

from config.celery_app import app
from image_model_domain.caching import registry_bump
from image_model_domain.sources import validate_model_source, validate_source, validate_weight_name

SAFETENSORS_ONLY = RegexValidator(r"\.safetensors\Z", "Only .safetensors weight files are accepted.")


class Family(models.TextChoices):
    SD1 = "sd1", "Stable Diffusion 1.x"
    SD2 = "sd2", "Stable Diffusion 2.x"
    SDXL = "sdxl", "Stable Diffusion XL"


def registry_changed() -> None:
    """Tell every worker, once committed, to load or drop what the registry now says (tasks/registry.py)."""

    def send() -> None:
        # Note: publish to the fanout exchange itself, declared as such; a queue name would make
        # kombu's Redis transport deliver to one bound queue instead of every worker's.
        fanout = Exchange(settings.REGISTRY_BROADCAST_QUEUE, type="fanout")
        try:
            app.send_task("tasks.registry.sync_registry", exchange=fanout, routing_key="sync", declare=[fanout])
        except Exception as error:  # the row is saved; workers still sync at their next start
            logging.getLogger(__name__).warning("could not broadcast a registry change: %s", error)

    transaction.on_commit(registry_bump)
    transaction.on_commit(send)


class RegistryRow(models.Model):
    """Saving or deleting a row (API, admin, shell) reaches running workers without a restart."""

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        super().save(*args, **kwargs)
        registry_changed()

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        registry_changed()
        return result


class NamedManager(models.Manager):
    """Rows are found by name in fixtures (natural keys), so loaddata never clashes on ids."""

    def get_by_natural_key(self, name: str) -> models.Model:
        return self.get(name=name)


class DLModel(RegistryRow):
    """A diffusion checkpoint: a Hugging Face repo id, or a directory or single .safetensors file confined to
    MODEL_ROOT (sources.py)."""

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(
        max_length=500,
        validators=[validate_model_source],
        help_text=(
            "Hugging Face repo id (org/name), or a directory under MODEL_ROOT, or a single-file .safetensors "
            'checkpoint under MODEL_ROOT (its component configs from metadata "config": a diffusers directory '
            "or repo id of the same family)."
        ),
    )
    revision = models.CharField(max_length=100, blank=True, help_text="Hub revision (branch, tag or commit).")
    family = models.CharField(max_length=10, choices=Family.choices, default=Family.SD1)
    dtype = models.CharField(
        max_length=10,
        choices=[("auto", "auto"), ("float16", "float16"), ("bfloat16", "bfloat16"), ("float32", "float32")],
        default="auto",
    )
    default_scheduler = models.CharField(max_length=30, default="euler")
    resolution = models.PositiveIntegerField(default=512, help_text="Native image size in pixels.")
    enabled = models.BooleanField(default=True, help_text="Disabled models are never chosen or drawn.")
    preload = models.BooleanField(default=False, help_text="Loaded when a worker starts.")
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NamedManager()

    class Meta:
        ordering = ["name"]
        verbose_name = "diffusion model"

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)


class LoraAdapter(RegistryRow):
    """A registered LoRA. Requests name adapters from this registry, never paths or URLs."""

    name = models.SlugField(max_length=100, unique=True)
    source = models.CharField(
        max_length=500,
        validators=[validate_source],
        help_text="Hugging Face repo id (org/name), or a directory under MODEL_ROOT.",
    )
    weight_name = models.CharField(max_length=200, validators=[validate_weight_name, SAFETENSORS_ONLY])
    family = models.CharField(max_length=10, choices=Family.choices, default=Family.SD1)
    default_scale = models.FloatField(default=1.0, validators=[MinValueValidator(-2.0), MaxValueValidator(2.0)])
    enabled = models.BooleanField(default=True)
    trigger_words = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NamedManager()

    class Meta:
        ordering = ["name"]
        verbose_name = "LoRA adapter"

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)


class JobKind(models.TextChoices):
    RANDOM_DIFFUSION = "random_diffusion", "Random diffusion"
    TEXT_TO_IMAGE = "text_to_image", "Text to image"
    IMAGE_TO_IMAGE = "image_to_image", "Image to image"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class GenerationJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="generation_jobs"
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    params = models.JSONField(help_text="The validated request, as the worker runs it.")
    seed = models.BigIntegerField(help_text="The request seed actually used.")
    model = models.ForeignKey(DLModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    dataset = models.ForeignKey(
        "dataset_domain.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    init_image = models.ImageField(upload_to="init-images/", blank=True, max_length=300)
    init_image_sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the init image file.")
    queue = models.CharField(max_length=100)
    images_expected = models.PositiveIntegerField()
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When the last message was sent.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_wait_s = models.FloatField(null=True, blank=True)
    load_s = models.FloatField(null=True, blank=True)
    inference_s = models.FloatField(null=True, blank=True)
    save_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    webhook_url = models.URLField(blank=True, max_length=500)
    client_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="The submitting client's address (anonymous jobs are capped per address)."
    )

    class Meta:
        ordering = ["-queued_at"]
        indexes = [
            models.Index(fields=["status", "queued_at"], name="job_queue_idx"),
            models.Index(fields=["owner", "-queued_at"], name="job_owner_recent_idx"),
            models.Index(fields=["kind", "-queued_at"], name="job_kind_recent_idx"),
            # The queue caps count a submitter's active jobs on every submit: these read those alone,
            # not a user's (or an address's) whole history.
            models.Index(fields=["owner"], condition=models.Q(status__in=ACTIVE_STATUSES), name="job_active_owner_idx"),
            models.Index(
                fields=["client_ip"],
                condition=models.Q(status__in=ACTIVE_STATUSES, owner__isnull=True),
                name="job_active_anonymous_ip_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_unique_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def images_in_order(self) -> list[GeneratedImage]:
        """The job's images by index, whatever order their batches were saved in (uses a prefetch of `images`)."""
        return sorted(self.images.all(), key=lambda image: image.index)


class GeneratedImage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveIntegerField(help_text="Position within the job.")
    file = models.ImageField(upload_to="generated/%Y/%m/%d/", max_length=300)
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    model = models.ForeignKey(DLModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    model_name = models.CharField(max_length=100, help_text="Kept if the model row is deleted.")
    loras = models.JSONField(default=list, blank=True, help_text="[{name, scale}] as applied.")
    lora_scale = models.FloatField(default=1.0)
    source_image = models.ForeignKey(
        "dataset_domain.DatasetImage", null=True, blank=True, on_delete=models.SET_NULL, related_name="generated"
    )
    source_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the init image (image-to-image), to replay it."
    )
    seed = models.BigIntegerField()
    scheduler = models.CharField(max_length=30)
    steps = models.PositiveIntegerField()
    guidance_scale = models.FloatField()
    strength = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "index"]
        indexes = [
            models.Index(fields=["-created_at"], name="image_recent_idx"),
            models.Index(fields=["model_name", "-created_at"], name="image_model_recent_idx"),
        ]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="image_unique_job_index")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.index}"


class WorkerHeartbeat(models.Model):
    """A running worker, written every WORKER_HEARTBEAT_INTERVAL_S by the worker itself (tasks/presence.py).

    A row older than WORKER_HEARTBEAT_TIMEOUT_S is a worker that died without saying so; a worker
    that shuts down cleanly removes its row.
    """

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.CharField(max_length=2000, help_text="The queues it consumes, as ,a,b, (one LIKE finds a queue).")
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def queue_names(self) -> list[str]:
        return [name for name in self.queues.split(",") if name]
