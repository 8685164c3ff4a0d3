"""Job views: list, detail (cached once final), cancel, and the queue in order."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.errors import error_responses as errors
from common.api.files import file_responses, media_file_response
from common.api.filters import StrictFilterSet
from image_model_domain.api.serializers import JobOutput, QueueEntryOutput
from image_model_domain.api.views.openapi import FINISHED_JOB_EXAMPLE, JOB_EXAMPLE
from image_model_domain.api.views.visibility import visible_to
from image_model_domain.caching import TIMEOUT_S as CACHE_TIMEOUT_S
from image_model_domain.caching import job_key
from image_model_domain.jobs import job_cancel, job_delete
from image_model_domain.models import ACTIVE_STATUSES, GenerationJob
from image_model_domain.selectors import job_list, queue_entries


class JobFilter(StrictFilterSet):
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
    serializer_class = JobOutput
    filterset_class = JobFilter

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return job_list(user=self.request.user)


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
        staff = bool(request.user.is_staff)  # staff see errors unredacted, owners without server paths
        cached = cache.get(job_key(kwargs["pk"])) if final else None
        if cached is not None and cached["base"] == base and cached.get("staff") == staff:
            return Response(cached["data"])
        data = self.get_serializer(self.get_object()).data
        if final:
            cache.set(job_key(kwargs["pk"]), {"base": base, "staff": staff, "data": data}, CACHE_TIMEOUT_S)
        return Response(data)

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return job_list(user=self.request.user)

    def perform_destroy(self, instance: GenerationJob) -> None:
        job_delete(job=instance)


class JobInitImageView(APIView):
    @extend_schema(
        responses={
            **file_responses("The image-to-image job's start image, as uploaded."),
            **errors(401, 404),
        },
        summary="An image-to-image job's init image",
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        job = get_object_or_404(visible_to(request, GenerationJob.objects.all()), pk=pk)
        if not job.init_image:
            raise NotFound("This job has no init image.")
        extension = job.init_image.name.rsplit(".", 1)[-1] if "." in job.init_image.name else "png"
        return media_file_response(job.init_image, filename=f"{job.pk}-init.{extension}")


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
        job = job_cancel(job=get_object_or_404(visible_to(request, GenerationJob.objects.all()), pk=pk))
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
                        value=[
                            {
                                "position": 1,
                                "estimated_start_s": 8.5,
                                "worker_available": True,
                                "note": "",
                                "job": JOB_EXAMPLE,
                            }
                        ],
                        status_codes=[200],
                    )
                ],
            ),
            **errors(401),
        },
        summary="Queued and running jobs in order",
    )
    def get(self, request: Request) -> Response:
        entries = queue_entries(user=request.user)
        return Response(QueueEntryOutput(entries, many=True, context={"request": request}).data)
