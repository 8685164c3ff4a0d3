"""Domain functions for generated images: storing one with the recipe that replays it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile

from image_model_domain.models import DLModel, GeneratedImage, GenerationJob

if TYPE_CHECKING:
    from services.types import Recipe


def generated_image_create(
    *, job: GenerationJob, index: int, recipe: Recipe, png: bytes, source_image_id: int | None = None
) -> GeneratedImage:
    """Write the PNG and its row; if the row cannot be written (e.g. the job was deleted), no file is left."""
    image = GeneratedImage(
        job=job,
        index=index,
        prompt=recipe.prompt,
        negative_prompt=recipe.negative_prompt,
        model=DLModel.objects.filter(name=recipe.model).first(),
        model_name=recipe.model,
        loras=[{"name": lora.name, "scale": lora.scale} for lora in recipe.loras],
        lora_scale=recipe.lora_scale,
        source_image_id=source_image_id,
        source_sha256=recipe.init_image_sha256 or "",
        seed=recipe.seed,
        scheduler=recipe.scheduler,
        steps=recipe.steps,
        guidance_scale=recipe.guidance_scale,
        strength=recipe.strength,
        width=recipe.width,
        height=recipe.height,
        sha256=hashlib.sha256(png).hexdigest(),
    )
    image.file.save(f"{job.pk}-{index:04d}.png", ContentFile(png), save=False)
    try:
        image.save()
    except Exception:
        image.file.storage.delete(image.file.name)
        raise
    return image
