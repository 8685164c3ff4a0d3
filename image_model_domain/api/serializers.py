from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api.parsers import json_depth_check, json_loads_bounded
from common.api.strict import RejectUnknownFields
from image_model_domain.events import queue_position
from image_model_domain.models import DLModel, GeneratedImage, GenerationJob, JobStatus, LoraAdapter
from image_model_domain.registry import SCHEDULERS
from image_model_domain.seeds import MAX_SEED
from image_model_domain.sources import error_for_owner, source_problem
from image_model_domain.webhooks import webhook_url_check

MAX_PIXELS = 1536 * 1536
LORAS_HELP = "Registered LoRA adapters to apply, at most two, each with an optional scale."
PREVIEW_HELP = "Send preview images of the latents every PREVIEW_EVERY_STEPS steps on the job's event stream."


class LoraChoiceSerializer(RejectUnknownFields, serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    scale = serializers.FloatField(min_value=-2.0, max_value=2.0, required=False, allow_null=True)


def _check_webhook(value: str) -> str:
    if value:
        try:
            webhook_url_check(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict["webhook_url"]) from None
    return value


@extend_schema_field({"type": "integer", "minimum": 64, "maximum": 2048, "multipleOf": 8})
class DimensionField(serializers.IntegerField):
    """A width or height in pixels: a multiple of 8 (the VAE's scale), as the schema says."""


class GenerationInput(RejectUnknownFields, serializers.Serializer):
    """What both bodies of POST /api/v1/generations/ share (generation_inputs.py); as text-to-image's JSON."""

    prompt = serializers.CharField(max_length=1000)
    negative_prompt = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    model = serializers.SlugField(
        max_length=100, required=False, help_text="A registered model; default: the first enabled."
    )
    num_images = serializers.IntegerField(min_value=1, max_value=8, default=1)
    steps = serializers.IntegerField(min_value=1, max_value=150, default=25)
    guidance_scale = serializers.FloatField(min_value=0.0, max_value=30.0, default=7.5)
    width = DimensionField(min_value=64, max_value=2048, required=False, help_text="Multiple of 8.")
    height = DimensionField(min_value=64, max_value=2048, required=False, help_text="Multiple of 8.")
    scheduler = serializers.ChoiceField(choices=SCHEDULERS, required=False)
    seed = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SEED,
        required=False,
        allow_null=True,
        help_text="Absent or 0: random. The seed used is in the job.",
    )
    loras = serializers.ListField(
        child=LoraChoiceSerializer(), max_length=2, required=False, default=list, help_text=LORAS_HELP
    )
    lora_scale = serializers.FloatField(min_value=0.0, max_value=2.0, default=1.0)
    strength = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.75, help_text="Image-to-image only.")
    init_image = serializers.ImageField(help_text="The image to start from (PNG, JPEG, WebP, GIF or BMP).")
    webhook_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    preview = serializers.BooleanField(default=False, help_text=PREVIEW_HELP)

    def validate_width(self, value: int) -> int:
        if value % 8:
            raise serializers.ValidationError("Must be a multiple of 8.")
        return value

    validate_height = validate_width

    def validate_webhook_url(self, value: str) -> str:
        return _check_webhook(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("width") and attrs.get("height") and attrs["width"] * attrs["height"] > MAX_PIXELS:
            raise serializers.ValidationError({"width": f"width x height may be at most {MAX_PIXELS} pixels."})
        return attrs


class RandomDiffusionInput(RejectUnknownFields, serializers.Serializer):
    dataset = serializers.IntegerField(min_value=1)
    prompt_list = serializers.ListField(child=serializers.CharField(max_length=1000), min_length=1, max_length=100)
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=1000)
    models = serializers.ListField(child=serializers.SlugField(max_length=100), required=False, max_length=20)
    negative_prompt = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    strength = serializers.FloatField(min_value=0.05, max_value=1.0, default=0.75)
    steps = serializers.IntegerField(min_value=1, max_value=150, default=25)
    guidance_scale = serializers.FloatField(min_value=0.0, max_value=30.0, default=7.5)
    scheduler = serializers.ChoiceField(choices=SCHEDULERS, required=False, allow_null=True, default=None)
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, required=False, allow_null=True)
    batch_size = serializers.IntegerField(min_value=1, max_value=16, required=False)
    webhook_url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    preview = serializers.BooleanField(default=False, help_text=PREVIEW_HELP)

    def validate_webhook_url(self, value: str) -> str:
        return _check_webhook(value)


class LegacyRandomDiffusionInput(RejectUnknownFields, serializers.Serializer):
    prompt_list = serializers.ListField(child=serializers.CharField(max_length=1000), min_length=1, max_length=100)


class ImageOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model_name")
    job = serializers.UUIDField(source="job_id")
    source_image = serializers.IntegerField(source="source_image_id", allow_null=True)

    class Meta:
        model = GeneratedImage
        fields = [
            "id",
            "job",
            "index",
            "url",
            "prompt",
            "negative_prompt",
            "model",
            "loras",
            "lora_scale",
            "seed",
            "scheduler",
            "steps",
            "guidance_scale",
            "strength",
            "width",
            "height",
            "sha256",
            "source_image",
            "source_sha256",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, image: GeneratedImage) -> str:
        url = reverse("image-file", args=[image.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class ProgressOutput(serializers.Serializer):
    step = serializers.IntegerField(help_text="Denoising steps done, over all images.")
    total = serializers.IntegerField(help_text="Denoising steps in all.")
    fraction = serializers.FloatField(help_text="step / total, from 0 to 1.")


class JobOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", allow_null=True, default=None)
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    progress = serializers.SerializerMethodField()
    position = serializers.SerializerMethodField()
    init_image = serializers.SerializerMethodField(help_text="Image-to-image: the start image's URL.")
    images = ImageOutput(many=True, read_only=True, source="images_in_order", help_text="In index order.")

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "kind",
            "status",
            "owner",
            "model",
            "dataset",
            "params",
            "init_image_sha256",
            "seed",
            "queue",
            "images_expected",
            "progress",
            "position",
            "cancel_requested",
            "attempts",
            "queued_at",
            "started_at",
            "finished_at",
            "queue_wait_s",
            "load_s",
            "inference_s",
            "save_s",
            "error",
            "webhook_url",
            "init_image",
            "images",
        ]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_init_image(self, job: GenerationJob) -> str | None:
        if not job.init_image:
            return None
        url = reverse("job-init-image", args=[job.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def to_representation(self, job: GenerationJob) -> dict[str, Any]:
        data = super().to_representation(job)
        request = self.context.get("request")
        if data.get("error") and not (request is not None and request.user.is_staff):
            data["error"] = error_for_owner(data["error"])  # no server paths for non-staff eyes
        return data

    @extend_schema_field(ProgressOutput)
    def get_progress(self, job: GenerationJob) -> dict[str, Any]:
        total = max(job.progress_total, 1)
        return {"step": job.progress_step, "total": job.progress_total, "fraction": round(job.progress_step / total, 4)}

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1))
    def get_position(self, job: GenerationJob) -> int | None:
        """1 for the next job a worker takes; None once running or finished.

        Lists annotate it (selectors.with_positions) and job_enqueue records the one it published,
        so only a job read alone counts here.
        """
        if job.status != JobStatus.QUEUED:
            return None
        position = getattr(job, "position", None)
        return position if position is not None else queue_position(job)


class QueueEntryOutput(serializers.Serializer):
    position = serializers.IntegerField(allow_null=True)
    estimated_start_s = serializers.FloatField(
        allow_null=True, help_text="Seconds until it starts; null when unknown or when no worker serves its queue."
    )
    worker_available = serializers.BooleanField(help_text="A live worker consumes the job's queue.")
    note = serializers.CharField(allow_blank=True, help_text="Why there is no estimate, when there is none.")
    job = JobOutput()


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


@extend_schema_field({"type": "object", "additionalProperties": {}})
class BoundedJSONField(serializers.JSONField):
    """A JSON object; a JSON string in a form is parsed with the nesting limit of request bodies."""

    def to_internal_value(self, data: Any) -> Any:
        if getattr(data, "is_json_string", False):
            try:
                return json_loads_bounded(data)
            except ValueError:
                self.fail("invalid")
        try:
            json_depth_check(data)
        except ValueError:
            self.fail("invalid")
        return super().to_internal_value(data)


class DLModelSerializer(RejectUnknownFields, serializers.ModelSerializer):
    default_scheduler = serializers.ChoiceField(choices=SCHEDULERS, default="euler", required=False)
    metadata = BoundedJSONField(required=False)

    class Meta:
        model = DLModel
        fields = [
            "id",
            "name",
            "source",
            "revision",
            "family",
            "dtype",
            "default_scheduler",
            "resolution",
            "enabled",
            "preload",
            "description",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_default_scheduler(self, value: str) -> str:
        if value not in SCHEDULERS:
            raise serializers.ValidationError(f"Unknown scheduler; use one of {', '.join(SCHEDULERS)}.")
        return value

    def validate_metadata(self, value: Any) -> Any:
        # A form field holds a JSON string, so "null" gets past allow_null=False: the column is NOT NULL.
        if value is None:
            raise serializers.ValidationError("This field may not be null.")
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if _has_nul(value):  # PostgreSQL's jsonb cannot store the NUL character
            raise serializers.ValidationError("Null characters are not allowed.")
        if "config" in value:  # a single-file checkpoint's component configs: held to the rules of a source
            config = value["config"]
            problem = source_problem(config) if isinstance(config, str) else "Give a directory or repo id."
            if problem:
                raise serializers.ValidationError(f"config: {problem}")
        return value


class LoraAdapterSerializer(RejectUnknownFields, serializers.ModelSerializer):
    class Meta:
        model = LoraAdapter
        fields = [
            "id",
            "name",
            "source",
            "weight_name",
            "family",
            "default_scale",
            "enabled",
            "trigger_words",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


def upload_limit_note() -> str:
    return f"Uploads up to {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
