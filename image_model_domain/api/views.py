"""Thin views: validate with a serializer, call one domain function, serialize the answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from dataset_domain.models import Dataset
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
from image_model_domain.jobs import (
    image_delete,
    job_cancel,
    job_create_generation,
    job_create_random_diffusion,
    job_delete,
    queue_jobs,
)
from image_model_domain.models import DLModel, GeneratedImage, GenerationJob, JobStatus, LoraAdapter

ERRORS = {
    400: OpenApiResponse(description="Invalid input: `errors` names each bad field."),
    401: OpenApiResponse(description="Not signed in."),
    403: OpenApiResponse(description="Not allowed."),
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
        responses={202: JobOutput, **ERRORS},
        summary="Text-to-image or image-to-image with LoRAs",
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
        request=RandomDiffusionInput, responses={202: JobOutput, **ERRORS}, summary="Random diffusion over a dataset"
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
        responses={202: JobOutput, **ERRORS, 404: OpenApiResponse(description="No such dataset.")},
        summary="Random diffusion (the original server's route)",
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


class JobListView(generics.ListAPIView):
    serializer_class = JobOutput
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[GenerationJob]:
        jobs = GenerationJob.objects.select_related("model", "owner").prefetch_related("images")
        return visible_to(self.request, jobs).order_by("-queued_at")


class JobDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = JobOutput

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return visible_to(
            self.request, GenerationJob.objects.select_related("model", "owner").prefetch_related("images")
        )

    def perform_destroy(self, instance: GenerationJob) -> None:
        job_delete(job=instance)


class JobCancelView(APIView):
    @extend_schema(
        request=None,
        responses={200: JobOutput, 404: OpenApiResponse(description="No such job.")},
        summary="Cancel a job",
    )
    def post(self, request: Request, pk: str) -> Response:
        job = get_object_or_404(visible_to(request, GenerationJob.objects.all()), pk=pk)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return Response({"detail": f"The job has finished ({job.status}); nothing to cancel."}, status=409)
        job = job_cancel(job=job)
        return Response(JobOutput(job, context={"request": request}).data)


class QueueView(APIView):
    @extend_schema(responses={200: QueueEntryOutput(many=True)}, summary="Queued and running jobs in order")
    def get(self, request: Request) -> Response:
        recent = GenerationJob.objects.filter(status=JobStatus.SUCCEEDED, images_expected__gt=0).order_by(
            "-finished_at"
        )[:20]
        per_image = [
            (job.finished_at - job.started_at).total_seconds() / job.images_expected
            for job in recent
            if job.started_at and job.finished_at
        ]
        seconds_per_image = sum(per_image) / len(per_image) if per_image else None
        entries, ahead_s, position = [], 0.0, 0
        visible = set(visible_to(request, GenerationJob.objects.all()).values_list("pk", flat=True))
        for job in queue_jobs().select_related("model", "owner").prefetch_related("images"):
            remaining = job.images_expected * (1 - job.progress_step / max(job.progress_total, 1))
            if job.status == JobStatus.QUEUED:
                position += 1
            estimate = None if seconds_per_image is None else (0.0 if job.status == JobStatus.RUNNING else ahead_s)
            if job.pk in visible:
                entries.append(
                    {
                        "position": position if job.status == JobStatus.QUEUED else None,
                        "estimated_start_s": estimate,
                        "job": JobOutput(job, context={"request": request}).data,
                    }
                )
            ahead_s += (seconds_per_image or 0.0) * remaining
        return Response(entries)


class ImageFilter(filters.FilterSet):
    job = filters.UUIDFilter(field_name="job_id")
    model = filters.CharFilter(field_name="model_name")
    prompt = filters.CharFilter(field_name="prompt", lookup_expr="icontains")

    class Meta:
        model = GeneratedImage
        fields = ["job", "model", "prompt"]


class ImageListView(generics.ListAPIView):
    serializer_class = ImageOutput
    filterset_class = ImageFilter

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return visible_to(self.request, GeneratedImage.objects.all()).order_by("-created_at", "index")


class ImageDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = ImageOutput

    def get_queryset(self) -> QuerySet[GeneratedImage]:
        return visible_to(self.request, GeneratedImage.objects.all())

    def perform_destroy(self, instance: GeneratedImage) -> None:
        image_delete(image=instance)


class ImageFileView(APIView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiResponse(description="The PNG, with its recipe in text chunks.")},
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


class DLModelListView(generics.ListCreateAPIView):
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    filterset_fields = ["family", "enabled", "preload"]


class DLModelDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    lookup_field = "name"


class LoraListView(generics.ListCreateAPIView):
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    filterset_fields = ["family", "enabled"]


class LoraDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    lookup_field = "name"
