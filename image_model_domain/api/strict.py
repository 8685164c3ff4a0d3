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


class RejectUnknownFields(serializers.Serializer):
    """A mixin for input serializers: keys that are not writable fields answer 400 naming each one.

    Read-only fields of a model (id, created_at) are let through unread, so a GET body can be PUT back.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = [name for name in data if name not in self.fields]
            if unknown:
                raise serializers.ValidationError({name: [unknown_field_message(name, writable)] for name in unknown})
        return super().to_internal_value(data)
