"""Thin views: validate with a serializer, call one domain function, serialize the answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from dataset_domain.models import Dataset
from image_model_domain.api.errors import error_responses as errors
from image_model_domain.api.pagination import Pagination
from image_model_domain.api.permissions import IsStaffOrReadOnly
from image_model_domain.api.serializers import (
    DLModelSerializer,
    GenerationInput,
    ImageOutput,
    JobOutput,
    LegacyRandomDiffusionInput,
    LoraAdapterSerializer,
    QueueEntryOutput,
    RandomDiffusionInput,
)
from image_model_domain.caching import TIMEOUT_S as CACHE_TIMEOUT_S
from image_model_domain.caching import job_key, registry_list_key
from image_model_domain.jobs import (
    image_delete,
    job_cancel,
    job_create_generation,
    job_create_random_diffusion,
    job_delete,
    queue_jobs,
)
from image_model_domain.models import ACTIVE_STATUSES, DLModel, GeneratedImage, GenerationJob, JobStatus, LoraAdapter

SUBMISSION_ERRORS = (400, 401, 409, 429, 503)

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Retrying with the same key and body returns the same job; another body answers 409.",
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[202],
    description="The job's URL, to poll.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429], description="Seconds to wait."
)

IMAGE_EXAMPLE: dict[str, Any] = {
    "id": "6f1c3c52-1a8e-4b5f-9d7e-2f4c0f0a9b11",
    "job": "0b7e2d8a-5c1f-4e36-8a57-0d7c9b3e6f21",
    "index": 0,
    "url": "https://diffusion.example.com/api/v1/images/6f1c3c52-1a8e-4b5f-9d7e-2f4c0f0a9b11/file/",
    "prompt": "a red fox in the snow, watercolour",
    "negative_prompt": "",
    "model": "sd15",
    "loras": [{"name": "ink", "scale": 0.5}],
    "lora_scale": 1.0,
    "seed": 1234,
    "scheduler": "euler",
    "steps": 25,
    "guidance_scale": 7.5,
    "strength": None,
    "width": 512,
    "height": 512,
    "sha256": "22ac1f2c759d73d7dcfff2260a2e181386a464f7413d4a1eb7817c0aaab84222",
    "source_image": None,
    "created_at": "2026-11-22T10:00:09Z",
}
JOB_EXAMPLE: dict[str, Any] = {
    "id": "0b7e2d8a-5c1f-4e36-8a57-0d7c9b3e6f21",
    "kind": "text_to_image",
    "status": "queued",
    "owner": "alice",
    "model": "sd15",
    "dataset": None,
    "params": {
        "model": "sd15",
        "prompt": "a red fox in the snow, watercolour",
        "negative_prompt": "",
        "num_images": 1,
        "steps": 25,
        "guidance_scale": 7.5,
        "width": 512,
        "height": 512,
        "scheduler": "euler",
        "loras": [{"name": "ink", "scale": 0.5}],
        "lora_scale": 1.0,
        "strength": None,
    },
    "seed": 1234,
    "queue": "diffusion",
    "images_expected": 1,
    "progress": {"step": 0, "total": 25, "fraction": 0.0},
    "position": 1,
    "cancel_requested": False,
    "attempts": 0,
    "queued_at": "2026-11-22T10:00:00Z",
    "started_at": None,
    "finished_at": None,
    "queue_wait_s": None,
    "load_s": None,
    "inference_s": None,
    "save_s": None,
    "error": "",
    "webhook_url": "",
    "images": [],
}
FINISHED_JOB_EXAMPLE: dict[str, Any] = {
    **JOB_EXAMPLE,
    "status": "succeeded",
    "progress": {"step": 25, "total": 25, "fraction": 1.0},
    "position": None,
    "attempts": 1,
    "started_at": "2026-11-22T10:00:01Z",
    "finished_at": "2026-11-22T10:00:09Z",
    "queue_wait_s": 1.02,
    "load_s": 3.1,
    "inference_s": 4.4,
    "save_s": 0.05,
    "images": [IMAGE_EXAMPLE],
}
JOB_ACCEPTED = OpenApiResponse(
    JobOutput,
    description="Queued. The Location header is the job's URL; poll it or GET /api/v1/queue/.",
    examples=[OpenApiExample("Queued job", value=JOB_EXAMPLE, status_codes=[202])],
)
MODEL_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "name": "sd15",
    "source": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "revision": "",
    "family": "sd1",
    "dtype": "auto",
    "default_scheduler": "euler",
    "resolution": 512,
    "enabled": True,
    "preload": True,
    "description": "Stable Diffusion 1.5.",
    "metadata": {},
    "created_at": "2026-11-22T09:00:00Z",
    "updated_at": "2026-11-22T09:00:00Z",
}
LORA_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "name": "ink",
    "source": "org/ink-lora",
    "weight_name": "pytorch_lora_weights.safetensors",
    "family": "sd1",
    "default_scale": 0.8,
    "enabled": True,
    "trigger_words": "ink drawing",
    "description": "Black ink line art.",
    "created_at": "2026-11-22T09:00:00Z",
    "updated_at": "2026-11-22T09:00:00Z",
}


def visible_to(request: Request, queryset: QuerySet) -> QuerySet:
    """Users see their own jobs and images, staff see all; anonymous clients see anonymous work."""
    user = request.user
    if user.is_authenticated and user.is_staff:
        return queryset
    owner_field = "owner" if queryset.model is GenerationJob else "job__owner"
    if user.is_authenticated:
        return queryset.filter(**{owner_field: user})
    return queryset.filter(**{f"{owner_field}__isnull": True})


def owner_of(request: Request) -> Any:
    return request.user if request.user.is_authenticated else None


def accepted(request: Request, job: GenerationJob) -> Response:
    job = GenerationJob.objects.select_related("model", "owner").get(pk=job.pk)
    response = Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
    response["Location"] = request.build_absolute_uri(f"/api/v1/jobs/{job.pk}/")
    return response


class SubmissionThrottle(ScopedRateThrottle):
    """Per-user (per-IP when anonymous) limit on job submissions: API_SUBMISSION_RATE, e.g. 60/minute."""

    def get_rate(self) -> str:
        return settings.API_SUBMISSION_RATE


class GenerationCreateView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [SubmissionThrottle]
    throttle_scope = "submissions"

    @extend_schema(
        request=GenerationInput,
        parameters=[IDEMPOTENCY_KEY, LOCATION, RETRY_AFTER],
        responses={202: JOB_ACCEPTED, **errors(*SUBMISSION_ERRORS)},
        summary="Text-to-image or image-to-image with LoRAs",
        description="JSON for text-to-image; a multipart form with `init_image` for image-to-image.",
        examples=[
            OpenApiExample(
                "Text to image",
                value={
                    "prompt": "a red fox in the snow, watercolour",
                    "num_images": 1,
                    "steps": 25,
                    "seed": 1234,
                    "loras": [{"name": "ink", "scale": 0.5}],
                },
                request_only=True,
                media_type="application/json",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = GenerationInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        job = job_create_generation(
            owner=owner_of(request),
            model_name=values.pop("model", None),
            idempotency_key=request.headers.get("Idempotency-Key", "")[:200],
            **values,
        )
        return accepted(request, job)


class RandomDiffusionCreateView(APIView):
    throttle_classes = [SubmissionThrottle]
    throttle_scope = "submissions"

    @extend_schema(
        request=RandomDiffusionInput,
        parameters=[IDEMPOTENCY_KEY, LOCATION, RETRY_AFTER],
        responses={202: JOB_ACCEPTED, **errors(*SUBMISSION_ERRORS)},
        summary="Random diffusion over a dataset",
        description="Image-to-image over a dataset's images, each with a prompt and a model drawn from the seed.",
        examples=[
            OpenApiExample(
                "Two prompts over a dataset",
                value={"dataset": 1, "prompt_list": ["a watercolour", "an ink drawing"], "strength": 0.6, "seed": 42},
                request_only=True,
                media_type="application/json",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = RandomDiffusionInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        dataset = Dataset.objects.filter(pk=values.pop("dataset")).first()
        if dataset is None:
            return Response({"detail": "Invalid input.", "errors": {"dataset": ["Unknown dataset."]}}, status=400)
        job = job_create_random_diffusion(
            owner=owner_of(request),
            dataset=dataset,
            model_names=values.pop("models", None),
            idempotency_key=request.headers.get("Idempotency-Key", "")[:200],
            **values,
        )
        return accepted(request, job)


class LegacyRandomDiffusionView(APIView):
    """The original server's route, unchanged: POST {"prompt_list": [...]} for a dataset."""

    throttle_classes = [SubmissionThrottle]
    throttle_scope = "submissions"

    @extend_schema(
        request=LegacyRandomDiffusionInput,
        parameters=[LOCATION, RETRY_AFTER],
        responses={202: JOB_ACCEPTED, **errors(400, 401, 404, 429, 503)},
        summary="Random diffusion (the original server's route)",
        examples=[
            OpenApiExample(
                "A prompt list",
                value={"prompt_list": ["a watercolour", "an ink drawing"]},
                request_only=True,
                media_type="application/json",
            )
        ],
    )
    def post(self, request: Request, dataset_id: int) -> Response:
        dataset = get_object_or_404(Dataset, pk=dataset_id)
        data = LegacyRandomDiffusionInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = job_create_random_diffusion(
            owner=owner_of(request), dataset=dataset, prompt_list=data.validated_data["prompt_list"]
        )
        return accepted(request, job)


class JobFilter(filters.FilterSet):
    model = filters.CharFilter(field_name="model__name")

    class Meta:
        model = GenerationJob
        fields = ["status", "kind", "model"]


@extend_schema_view(
    get=extend_schema(
        summary="Jobs, newest first",
        description="Your jobs (all jobs for staff; anonymous jobs for anonymous clients).",
        responses={200: JobOutput(many=True), **errors(400, 401)},
        examples=[OpenApiExample("A page of jobs", value=FINISHED_JOB_EXAMPLE, response_only=True)],
    )
)
class JobListView(generics.ListAPIView):
    pagination_class = Pagination
    serializer_class = JobOutput
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[GenerationJob]:
        jobs = GenerationJob.objects.select_related("model", "owner").prefetch_related("images")
        return visible_to(self.request, jobs).order_by("-queued_at")


@extend_schema_view(
    get=extend_schema(
        summary="A job, with its progress and images",
        responses={200: JobOutput, **errors(401, 404)},
        examples=[OpenApiExample("A finished job", value=FINISHED_JOB_EXAMPLE, response_only=True)],
    ),
    delete=extend_schema(
        summary="Delete a job with its images (a running job is cancelled first)",
        responses={204: OpenApiResponse(description="Deleted."), **errors(401, 404)},
    ),
)
class JobDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = JobOutput

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A finished job's JSON never changes until it is deleted or retried: serve it from the cache."""
        status_now = self.get_queryset().filter(pk=kwargs["pk"]).values_list("status", flat=True).first()
        if status_now is None:
            raise NotFound()
        final = status_now not in ACTIVE_STATUSES
        base = request.build_absolute_uri("/")  # image URLs in the body are absolute
        cached = cache.get(job_key(kwargs["pk"])) if final else None
        if cached is not None and cached["base"] == base:
            return Response(cached["data"])
        data = self.get_serializer(self.get_object()).data
        if final:
            cache.set(job_key(kwargs["pk"]), {"base": base, "data": data}, CACHE_TIMEOUT_S)
        return Response(data)

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return visible_to(
            self.request, GenerationJob.objects.select_related("model", "owner").prefetch_related("images")
        )

    def perform_destroy(self, instance: GenerationJob) -> None:
        job_delete(job=instance)


class JobCancelView(APIView):
    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(
                JobOutput,
                description="Cancelled (queued), or asked to stop at its next step (running).",
                examples=[
                    OpenApiExample(
                        "Cancelled",
                        value={
                            **JOB_EXAMPLE,
                            "status": "cancelled",
                            "position": None,
                            "cancel_requested": True,
                            "finished_at": "2026-11-22T10:00:02Z",
                            "error": "Cancelled before it started.",
                        },
                        status_codes=[200],
                    )
                ],
            ),
            **errors(401, 404, 409),
        },
        summary="Cancel a job",
    )
    def post(self, request: Request, pk: str) -> Response:
        job = get_object_or_404(visible_to(request, GenerationJob.objects.all()), pk=pk)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return Response({"detail": f"The job has finished ({job.status}); nothing to cancel."}, status=409)
        job = job_cancel(job=job)
        return Response(JobOutput(job, context={"request": request}).data)


class QueueView(APIView):
    @extend_schema(
        responses={
            200: OpenApiResponse(
                QueueEntryOutput(many=True),
                description="Running jobs first, then queued ones in the order workers take them.",
                examples=[
                    OpenApiExample(
                        "One queued job",
                        value=[{"position": 1, "estimated_start_s": 8.5, "job": JOB_EXAMPLE}],
                        status_codes=[200],
                    )
                ],
            ),
            **errors(401),
        },
        summary="Queued and running jobs in order",
    )
    def get(self, request: Request) -> Response:
        # Seconds per denoising step of one image, from recent jobs: works for any steps and counts.
        recent = GenerationJob.objects.filter(status=JobStatus.SUCCEEDED, progress_total__gt=0).order_by(
            "-finished_at"
        )[:20]
        per_step = [
            (job.finished_at - job.started_at).total_seconds() / job.progress_total
            for job in recent
            if job.started_at and job.finished_at
        ]
        seconds_per_step = sum(per_step) / len(per_step) if per_step else None
        entries, ahead_s, position = [], 0.0, 0
        visible = set(visible_to(request, GenerationJob.objects.all()).values_list("pk", flat=True))
        for job in queue_jobs().select_related("model", "owner").prefetch_related("images"):
            if job.status == JobStatus.QUEUED:
                position += 1
            estimate = None if seconds_per_step is None else (0.0 if job.status == JobStatus.RUNNING else ahead_s)
            if job.pk in visible:
                entries.append(
                    {
                        "position": position if job.status == JobStatus.QUEUED else None,
                        "estimated_start_s": estimate,
                        "job": JobOutput(job, context={"request": request}).data,
                    }
                )
            ahead_s += (seconds_per_step or 0.0) * max(job.progress_total - job.progress_step, 0)
        return Response(entries)


class ImageFilter(filters.FilterSet):
    job = filters.UUIDFilter(field_name="job_id")
    model = filters.CharFilter(field_name="model_name")
    prompt = filters.CharFilter(field_name="prompt", lookup_expr="icontains")

    class Meta:
        model = GeneratedImage
        fields = ["job", "model", "prompt"]


@extend_schema_view(
    get=extend_schema(
        summary="Generated images, newest first",
        responses={200: ImageOutput(many=True), **errors(400, 401)},
        examples=[OpenApiExample("A page of images", value=IMAGE_EXAMPLE, response_only=True)],
    )
)
class ImageListView(generics.ListAPIView):
    pagination_class = Pagination
    serializer_class = ImageOutput
    filterset_class = ImageFilter

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return visible_to(self.request, GeneratedImage.objects.all()).order_by("-created_at", "index")


@extend_schema_view(
    get=extend_schema(
        summary="An image's recipe",
        responses={200: ImageOutput, **errors(401, 404)},
        examples=[OpenApiExample("An image", value=IMAGE_EXAMPLE, response_only=True)],
    ),
    delete=extend_schema(
        summary="Delete an image and its file",
        responses={204: OpenApiResponse(description="Deleted."), **errors(401, 404)},
    ),
)
class ImageDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = ImageOutput

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return visible_to(self.request, GeneratedImage.objects.all())

    def perform_destroy(self, instance: GeneratedImage) -> None:
        image_delete(image=instance)


class ImageFileView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "download",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Present (any value): served as an attachment.",
            )
        ],
        responses={
            (200, "image/png"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The PNG, with its recipe in text chunks."
            ),
            **errors(401, 404),
        },
        summary="Download the PNG",
    )
    def get(self, request: Request, pk: str) -> FileResponse:
        image = get_object_or_404(visible_to(request, GeneratedImage.objects.all()), pk=pk)
        return FileResponse(
            image.file.open("rb"),
            content_type="image/png",
            as_attachment="download" in request.query_params,
            filename=f"{image.job_id}-{image.index}.png",
        )


def registry_list_schema(serializer: type, noun: str, example: dict[str, Any], create: dict[str, Any]) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary=f"Registered {noun}s",
            responses={200: serializer(many=True), **errors(400, 401)},
            examples=[OpenApiExample(f"A page of {noun}s", value=example, response_only=True)],
        ),
        post=extend_schema(
            summary=f"Register a {noun} (staff)",
            responses={201: serializer, **errors(400, 401, 403)},
            examples=[
                OpenApiExample(f"A new {noun}", value=create, request_only=True),
                OpenApiExample(f"The registered {noun}", value=example, response_only=True, status_codes=[201]),
            ],
        ),
    )


def registry_detail_schema(serializer: type, noun: str, example: dict[str, Any], change: dict[str, Any]) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary=f"A {noun}",
            responses={200: serializer, **errors(401, 404)},
            examples=[OpenApiExample(f"A {noun}", value=example, response_only=True)],
        ),
        put=extend_schema(
            summary=f"Replace a {noun} (staff)",
            responses={200: serializer, **errors(400, 401, 403, 404)},
            examples=[OpenApiExample(f"The updated {noun}", value=example, response_only=True)],
        ),
        patch=extend_schema(
            summary=f"Change some fields of a {noun} (staff)",
            responses={200: serializer, **errors(400, 401, 403, 404)},
            examples=[
                OpenApiExample("A change", value=change, request_only=True),
                OpenApiExample(f"The updated {noun}", value=example, response_only=True),
            ],
        ),
        delete=extend_schema(
            summary=f"Remove a {noun} (staff)",
            responses={204: OpenApiResponse(description="Removed."), **errors(401, 403, 404)},
        ),
    )


@registry_list_schema(
    DLModelSerializer,
    "model",
    MODEL_EXAMPLE,
    {"name": "sd15", "source": "stable-diffusion-v1-5/stable-diffusion-v1-5", "family": "sd1", "resolution": 512},
)
class CachedRegistryList(generics.ListCreateAPIView):
    """Registry lists from the cache; any save or delete of a row bumps the key's version."""

    cache_kind = ""

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = registry_list_key(self.cache_kind, request.build_absolute_uri())
        data = cache.get(key)
        if data is None:
            data = super().list(request, *args, **kwargs).data
            cache.set(key, data, CACHE_TIMEOUT_S)
        return Response(data)


class DLModelListView(CachedRegistryList):
    cache_kind = "models"
    pagination_class = Pagination
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    filterset_fields = ["family", "enabled", "preload"]


@registry_detail_schema(DLModelSerializer, "model", MODEL_EXAMPLE, {"enabled": False})
class DLModelDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    lookup_field = "name"


@registry_list_schema(
    LoraAdapterSerializer,
    "LoRA adapter",
    LORA_EXAMPLE,
    {"name": "ink", "source": "org/ink-lora", "weight_name": "pytorch_lora_weights.safetensors", "family": "sd1"},
)
class LoraListView(CachedRegistryList):
    cache_kind = "loras"
    pagination_class = Pagination
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    filterset_fields = ["family", "enabled"]


@registry_detail_schema(LoraAdapterSerializer, "LoRA adapter", LORA_EXAMPLE, {"default_scale": 0.6})
class LoraDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    lookup_field = "name"
