"""The two bodies of POST /api/v1/generations/: a JSON text-to-image request, a multipart image-to-image form.

Each is its own OpenAPI component, so a generated client sends exactly what the server reads: JSON for
TextToImageRequest, multipart/form-data for ImageToImageRequest. In the form every field is one text part,
except `loras`, whose parts hold JSON (an OpenAPI `encoding` of application/json): one part with the whole list
(what browsers and curl send) or one part per adapter with its object (what generators send for an array).
A part whose text is `null` means no value, as in JSON: never the string "null".
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api.parsers import json_loads_bounded
from image_model_domain.api.serializers import LORAS_HELP, GenerationInput, LoraChoiceSerializer
from image_model_domain.seeds import MAX_SEED


class TextToImageSerializer(GenerationInput):
    """Text-to-image, as a JSON body. Image-to-image is the multipart form (ImageToImageRequest)."""

    strength = None
    init_image = None


class ImageToImageSerializer(GenerationInput):
    """Image-to-image, as a multipart form with `init_image`; `loras` parts are JSON."""

    seed = serializers.IntegerField(
        min_value=0, max_value=MAX_SEED, required=False, help_text="Absent or 0: random. The seed used is in the job."
    )
    loras = serializers.ListField(
        child=LoraChoiceSerializer(),
        max_length=2,
        required=False,
        default=list,
        help_text=LORAS_HELP + " JSON parts: one holding the list, or one per adapter holding its object.",
    )

    def to_internal_value(self, data: Any) -> Any:
        self.form_encoded = hasattr(data, "getlist")  # parts are text: their fields parse them
        return super().to_internal_value(form_values(data, json_fields=("loras",)))


def form_values(data: Any, *, json_fields: tuple[str, ...]) -> Any:
    """A multipart QueryDict as plain values: the last part of each text field, `null` as None, JSON fields parsed."""
    if not hasattr(data, "getlist"):
        return data
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in data:
        parts = data.getlist(name)
        if name in json_fields:
            items: list[Any] = []
            for part in parts:
                try:
                    value = json_loads_bounded(part) if isinstance(part, str) else part
                except ValueError:
                    errors[name] = ["Each part must be JSON: a list of objects, or one object."]
                    break
                items.extend(value if isinstance(value, list) else [value])
            values[name] = items
        else:
            value = parts[-1] if parts else None
            values[name] = None if value == "null" else value
    if errors:
        raise serializers.ValidationError(errors)
    return values
