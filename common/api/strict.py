"""Request bodies name only known fields: anything else answers 400 naming it, as the schema promises
(`additionalProperties: false` on every request component).

A field silently ignored is a request silently changed: `cfg_scale` (AUTOMATIC1111's name) used to give a job
with the default guidance. Common names from AUTOMATIC1111, diffusers and ComfyUI get a hint to ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

# Other tools' names for our fields.
ALIASES = {
    "sampler_name": "scheduler",
    "sampler_index": "scheduler",
    "sampler": "scheduler",
    "cfg_scale": "guidance_scale",
    "cfg": "guidance_scale",
    "guidance": "guidance_scale",
    "n_iter": "num_images",
    "batch_size": "num_images",
    "num_images_per_prompt": "num_images",
    "batch_count": "num_images",
    "num_inference_steps": "steps",
    "denoising_strength": "strength",
    "init_images": "init_image",
    "image": "init_image",
    "negative": "negative_prompt",
    "sd_model_checkpoint": "model",
    "checkpoint": "model",
    "model_name": "model",
    "lora": "loras",
    "adapters": "loras",
    "prompts": "prompt_list",
}
IMAGE_TO_IMAGE_ONLY = ("strength", "init_image")


def unknown_field_message(name: str, known: Any) -> str:
    target = ALIASES.get(name, name)
    if target != name and target in known:
        return f"Unknown field; did you mean `{target}`?"
    if target in IMAGE_TO_IMAGE_ONLY and "prompt" in known:
        return f"`{target}` is for image-to-image: send a multipart form with `init_image`."
    return f"Unknown field. Known fields: {', '.join(sorted(known))}."


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """The schema's JSON type for a field, enforced: DRF would read 0 as the text "0" and false as the number 0."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.BooleanField):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(field, serializers.IntegerField):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(field, serializers.FloatField | serializers.DecimalField):
        ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(field, serializers.CharField | serializers.ChoiceField):
        ok, expected = isinstance(value, str), "text"
    elif isinstance(field, serializers.ListField | serializers.ListSerializer):
        if not isinstance(value, list):
            return f"Expected a list, got {type(value).__name__}."
        child = field.child
        for index, item in enumerate(value):
            message = json_type_error(child, item) if child is not None else None
            if message:
                return f"{index}: {message}"
        return None
    elif isinstance(field, serializers.Serializer | serializers.DictField):
        ok, expected = isinstance(value, dict), "an object"
    else:
        return None
    return None if ok else f"Expected {expected}, got {type(value).__name__}."


class RejectUnknownFields(serializers.Serializer):
    """A mixin for input serializers: keys that are not writable fields answer 400 naming each one, and in JSON
    each value must have its field's JSON type (a form's parts are all text: their fields parse them).

    Read-only fields of a model (id, created_at) are let through unread, so a GET body can be PUT back.
    """

    form_encoded = False

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            errors = {name: [unknown_field_message(name, writable)] for name in data if name not in self.fields}
            if not self.form_encoded:
                for name, value in data.items():
                    field = self.fields.get(name)
                    message = json_type_error(field, value) if field is not None and not field.read_only else None
                    if message:
                        errors[name] = [message]
            if errors:
                raise serializers.ValidationError(errors)
        elif isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = [name for name in data if name not in self.fields]
            if unknown:
                raise serializers.ValidationError({name: [unknown_field_message(name, writable)] for name in unknown})
        return super().to_internal_value(data)
