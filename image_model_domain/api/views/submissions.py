"""Views that start work: generations, random diffusions and the original server's route; each answers 202."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiRequest, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.errors import error_responses as errors
from common.api.parsers import BoundedJSONParser
from dataset_domain.models import Dataset
from image_model_domain.api.generation_inputs import ImageToImageSerializer, TextToImageSerializer
from image_model_domain.api.serializers import JobOutput, LegacyRandomDiffusionInput, RandomDiffusionInput
from image_model_domain.api.views.openapi import IDEMPOTENCY_KEY, JOB_ACCEPTED, LOCATION, RETRY_AFTER, SUBMISSION_ERRORS
from image_model_domain.api.views.throttling import SubmissionThrottle
from image_model_domain.api.views.visibility import client_ip_of, owner_of
from image_model_domain.jobs import job_create_generation, job_create_random_diffusion
from image_model_domain.models import GenerationJob


def accepted(request: Request, job: GenerationJob) -> Response:
    """202 Accepted with the job and its URL in Location: the answer of every view that starts work.

    The job is answered as the domain function returned it, not read again: its model and owner are
    loaded, job_enqueue recorded the queue position it published and that a new job has no images."""
    response = Response(JobOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
    response["Location"] = request.build_absolute_uri(f"/api/v1/jobs/{job.pk}/")
    return response


class GenerationCreateView(APIView):
    """JSON is text-to-image; a multipart form (with `init_image`) is image-to-image. Nothing else is read."""

    parser_classes = [BoundedJSONParser, MultiPartParser]
    throttle_classes = [SubmissionThrottle]
    throttle_scope = "submissions"

    @extend_schema(
        request={
            "application/json": TextToImageSerializer,
            "multipart/form-data": OpenApiRequest(
                ImageToImageSerializer, encoding={"loras": {"contentType": "application/json"}}
            ),
        },
        parameters=[IDEMPOTENCY_KEY, LOCATION, RETRY_AFTER],
        responses={202: JOB_ACCEPTED, **errors(*SUBMISSION_ERRORS)},
        summary="Text-to-image or image-to-image with LoRAs",
        description=(
            "A JSON body (TextToImageRequest) is text-to-image. A multipart form (ImageToImageRequest) with "
            "`init_image` is image-to-image: one text part per field, `loras` as JSON (one part with the list, or "
            "one part per adapter with its object)."
        ),
        examples=[
            OpenApiExample(
                "Text to image",
                value={
                    "prompt": "a red fox in the snow, watercolour",
                    "model": "tiny-sd-a",
                    "num_images": 1,
                    "steps": 25,
                    "seed": 1234,
                    "loras": [{"name": "tiny-lora-ink", "scale": 0.8}, {"name": "tiny-lora-glow", "scale": 0.5}],
                },
                request_only=True,
                media_type="application/json",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        multipart = (request.content_type or "").startswith("multipart/")
        data = (ImageToImageSerializer if multipart else TextToImageSerializer)(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        job = job_create_generation(
            owner=owner_of(request),
            client_ip=client_ip_of(request),
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
            client_ip=client_ip_of(request),
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
        responses={202: JOB_ACCEPTED, **errors(400, 401, 404, 409, 429, 503)},
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
            owner=owner_of(request),
            client_ip=client_ip_of(request),
            dataset=dataset,
            prompt_list=data.validated_data["prompt_list"],
        )
        return accepted(request, job)
