"""Domain functions for generated images: storing one with the recipe that replays it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile
from django.db import transaction

from image_model_domain.models import DLModel, GeneratedImage, GenerationJob, JobStatus

if TYPE_CHECKING:
    from services.types import Recipe


class AttemptOver(Exception):
    """The job is no longer running the attempt that made the image (the reconciler gave it to another
    worker, or it ended): the image is not stored."""


def generated_image_create(
    *,
    job: GenerationJob,
    index: int,
    recipe: Recipe,
    png: bytes,
    source_image_id: int | None = None,
    attempt: int | None = None,
) -> GeneratedImage:
    """Write the PNG and its row; if the row cannot be written (e.g. the job was deleted), no file is left.

    A worker passes the attempt it claimed: the row is inserted only while the job is still RUNNING that
    attempt, checked under the job row's lock in the inserting transaction, so a worker the reconciler gave
    up on cannot add its late image to the attempt that replaced it (which starts by deleting the images
    of earlier attempts, and would then fail on the duplicate index).
    """
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
        with transaction.atomic():
            if attempt is not None:
                ours = GenerationJob.objects.select_for_update(no_key=True).filter(
                    pk=job.pk, status=JobStatus.RUNNING, attempts=attempt
                )
                if not ours.exists():
                    raise AttemptOver(f"Job {job.pk} is no longer running attempt {attempt}.")
            image.save()
    except Exception:
        image.file.storage.delete(image.file.name)
        raise
    return image
