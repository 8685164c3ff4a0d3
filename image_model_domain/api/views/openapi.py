"""What the views' OpenAPI descriptions share: headers, example bodies, the 202 answer and the registry schemas."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from common.api.errors import error_responses as errors
from image_model_domain.api.serializers import JobOutput

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
    "model": "tiny-sd-a",
    "loras": [{"name": "tiny-lora-ink", "scale": 0.5}],
    "lora_scale": 1.0,
    "seed": 1234,
    "scheduler": "euler",
    "steps": 25,
    "guidance_scale": 7.5,
    "strength": None,
    "width": 64,
    "height": 64,
    "sha256": "22ac1f2c759d73d7dcfff2260a2e181386a464f7413d4a1eb7817c0aaab84222",
    "source_image": None,
    "source_sha256": "",
    "created_at": "2026-11-22T10:00:09Z",
}
JOB_EXAMPLE: dict[str, Any] = {
    "id": "0b7e2d8a-5c1f-4e36-8a57-0d7c9b3e6f21",
    "kind": "text_to_image",
    "status": "queued",
    "owner": "alice",
    "model": "tiny-sd-a",
    "dataset": None,
    "params": {
        "model": "tiny-sd-a",
        "prompt": "a red fox in the snow, watercolour",
        "negative_prompt": "",
        "num_images": 1,
        "steps": 25,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "scheduler": "euler",
        "loras": [{"name": "tiny-lora-ink", "scale": 0.5}],
        "lora_scale": 1.0,
        "strength": None,
        "preview": False,
        "batch_size": 4,
        "seeds": [1234],
    },
    "init_image_sha256": "",
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
    "init_image": None,
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


def registry_list_schema(serializer: type, noun: str, example: dict[str, Any], create: dict[str, Any]) -> Any:
    return extend_schema_view(
        get=extend_schema(
            summary=f"Registered {noun}s",
            responses={200: serializer(many=True), **errors(400, 401)},
            examples=[OpenApiExample(f"A page of {noun}s", value=example, response_only=True)],
        ),
        post=extend_schema(
            summary=f"Register a {noun} (staff)",
            responses={201: serializer, **errors(400, 401, 403, 409)},
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
            responses={200: serializer, **errors(400, 401, 403, 404, 409)},
            examples=[OpenApiExample(f"The updated {noun}", value=example, response_only=True)],
        ),
        patch=extend_schema(
            summary=f"Change some fields of a {noun} (staff)",
            responses={200: serializer, **errors(400, 401, 403, 404, 409)},
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
