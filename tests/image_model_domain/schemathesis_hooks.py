"""schemathesis hooks for test_openapi.py's run (loaded by `st run` through SCHEMATHESIS_HOOKS).

The schema cannot say which names are registered, which dataset exists or which bytes make an image; for cases
schemathesis generates as valid (positive), these hooks put such values in, so that valid requests meet the
service's success paths instead of "Unknown model". Negative cases go out as generated.
The test passes what they need in DIFFUSION_ST_STATE (JSON): enabled models and LoRAs, the dataset and its
images, and scratch registry rows that writes may change.
"""

from __future__ import annotations

import io
import json
import os
import random
import zlib
from typing import Any

import schemathesis

STATE: dict[str, Any] = json.loads(os.environ.get("DIFFUSION_ST_STATE", "{}"))
MAX_PIXELS = 1536 * 1536


def png(seed: int) -> bytes:
    """A small valid PNG, its colour from the seed (distinct images: a dataset refuses duplicates with 409)."""
    import struct

    width = height = 8
    rows = b"".join(b"\x00" + bytes((seed % 256, (seed // 256) % 256, 80)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def realistic_generation(body: dict[str, Any], rng: random.Random, multipart: bool) -> None:
    body["model"] = rng.choice(STATE["models"])
    if body.get("loras"):
        names = rng.sample(STATE["loras"], k=min(len(body["loras"]), len(STATE["loras"])))
        body["loras"] = [{**lora, "name": name} for lora, name in zip(body["loras"], names, strict=False)]
    if (body.get("width") or 512) * (body.get("height") or 512) > MAX_PIXELS:
        body["height"] = 64
    if body.get("webhook_url"):
        body["webhook_url"] = "https://hooks.example.com/diffusion"
    if multipart:
        body["init_image"] = io.BytesIO(png(rng.randrange(1 << 16))).getvalue()
        # Image-to-image runs int(steps x strength) denoising steps: at least one, or the request is refused.
        if body.get("steps", 25) * body.get("strength", 0.75) < 1:
            body["strength"] = 1.0


def drop_undeclared(case: Any, body: dict[str, Any]) -> None:
    """A valid body has only declared properties where the schema closes them; the stateful phase's inferred links
    can add others (an Error response's `errors`), and such a body is not the valid one it is labelled."""
    alternative = case.operation.get_body_for_media_type(case.media_type)
    schema = getattr(alternative, "resolved_schema", None) or {}
    if schema.get("additionalProperties") is False:
        for name in [name for name in body if name not in schema.get("properties", {})]:
            del body[name]


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    rng = random.Random(repr(case.body)[:200])
    method, path = case.operation.method.upper(), case.operation.path
    # Stateful sequences name the rows they created: leave their path parameters alone.
    stateful = str(meta.phase.name) == "stateful"
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        drop_undeclared(case, body)
    if path == "/api/v1/generations/" and body is not None:
        realistic_generation(body, rng, multipart=(case.media_type or "").startswith("multipart/"))
    elif path == "/api/v1/random-diffusions/" and body is not None:
        body["dataset"] = STATE["dataset"]
        if body.get("steps", 25) * body.get("strength", 0.75) < 1:
            body["strength"] = 1.0
        body["models"] = rng.sample(STATE["models"], k=1)
        if "image_ids" in body:
            body["image_ids"] = STATE["images"][: max(1, min(len(body["image_ids"]), 3))]
        if body.get("webhook_url"):
            body["webhook_url"] = "https://hooks.example.com/diffusion"
    elif "{dataset_id}" in path and not stateful:
        case.path_parameters["dataset_id"] = STATE["dataset"]
    elif path == "/api/v1/datasets/{id}/images/" and method == "POST" and body is not None:
        if not stateful:
            case.path_parameters["id"] = STATE["scratch_dataset"]
        body["image"] = png(rng.randrange(1 << 16))
    elif path in ("/api/v1/models/{name}/", "/api/v1/loras/{name}/") and method != "GET":
        # Writes go to scratch rows; a stateful sequence keeps its own row, but never the registry's checkpoints
        # and LoRAs that the generation cases above name.
        kind, protected = ("scratch_model", STATE["models"]) if "models" in path else ("scratch_lora", STATE["loras"])
        if not stateful or case.path_parameters.get("name") in protected:
            case.path_parameters["name"] = STATE[kind]
    return case
