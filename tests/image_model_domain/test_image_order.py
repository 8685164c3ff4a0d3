"""A job's images come back in index order, whatever order their batches were saved in."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from PIL import Image
from rest_framework.test import APIClient

from image_model_domain.models import GeneratedImage, GenerationJob

pytestmark = pytest.mark.django_db


def make_job(prompt: str, save_order: list[int]) -> GenerationJob:
    job = GenerationJob.objects.create(
        kind="text_to_image",
        params={"model": "tiny-sd-a", "prompt": prompt},
        seed=10,
        queue="q",
        images_expected=len(save_order),
        status="succeeded",
    )
    for index in save_order:  # e.g. the batch of images 2-3 stored before the batch of 0-1
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(buffer, format="PNG")
        image = GeneratedImage(
            job=job,
            index=index,
            prompt=prompt,
            model_name="tiny-sd-a",
            seed=10 + index,
            scheduler="euler",
            steps=4,
            guidance_scale=7.5,
            width=8,
            height=8,
            sha256="x",
        )
        image.file.save(f"order-{job.pk}-{index}.png", ContentFile(buffer.getvalue()), save=False)
        image.save()
    return job


def test_job_and_image_lists_give_each_jobs_images_in_index_order() -> None:
    api = APIClient()
    older = make_job("older", [2, 3, 0, 1])
    newer = make_job("newer", [1, 0])

    assert [image["index"] for image in api.get(f"/api/v1/jobs/{older.pk}/").json()["images"]] == [0, 1, 2, 3]
    jobs = api.get("/api/v1/jobs/").json()["results"]
    assert [[image["index"] for image in job["images"]] for job in jobs] == [[0, 1], [0, 1, 2, 3]]
    by_job = api.get("/api/v1/images/", {"job": str(older.pk)}).json()["results"]
    assert [image["index"] for image in by_job] == [0, 1, 2, 3]
    listing = api.get("/api/v1/images/").json()["results"]
    assert [(image["job"], image["index"]) for image in listing] == [
        (str(newer.pk), 0),
        (str(newer.pk), 1),
        *[(str(older.pk), index) for index in range(4)],
    ]
