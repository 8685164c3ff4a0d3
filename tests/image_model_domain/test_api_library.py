"""The library of results: list, filter, detail, the PNG itself, delete with its file."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from PIL import Image
from rest_framework.test import APIClient

from image_model_domain.models import GeneratedImage, GenerationJob
from image_model_domain.seeds import image_seed

pytestmark = pytest.mark.django_db


def make_job(
    owner: User | None, prompt: str, model: str = "tiny-sd-a", count: int = 2, save_order: list[int] | None = None
) -> GenerationJob:
    """A finished job with `count` 8x8 PNGs, stored in `save_order` (default: by index)."""
    save_order = list(range(count)) if save_order is None else save_order
    job = GenerationJob.objects.create(
        kind="text_to_image",
        owner=owner,
        params={"model": model, "prompt": prompt},
        seed=10,
        queue="q",
        images_expected=len(save_order),
        status="succeeded",
    )
    for index in save_order:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(buffer, format="PNG")
        image = GeneratedImage(
            job=job,
            index=index,
            prompt=prompt,
            model_name=model,
            seed=image_seed(10, index),
            scheduler="euler",
            steps=4,
            guidance_scale=7.5,
            width=8,
            height=8,
            sha256="x",
        )
        image.file.save(f"t-{job.pk}-{index}.png", ContentFile(buffer.getvalue()), save=False)
        image.save()
    return job


def test_it_lists_filters_and_serves_images() -> None:
    api = APIClient()
    fox = make_job(None, "a red fox")
    make_job(None, "a blue whale", model="tiny-sd-b")
    listing = api.get("/api/v1/images/").json()
    assert listing["count"] == 4
    assert api.get("/api/v1/images/", {"prompt": "FOX"}).json()["count"] == 2
    assert api.get("/api/v1/images/", {"model": "tiny-sd-b"}).json()["count"] == 2
    by_job = api.get("/api/v1/images/", {"job": str(fox.pk)}).json()["results"]
    assert {item["prompt"] for item in by_job} == {"a red fox"}
    first = by_job[0]
    detail = api.get(f"/api/v1/images/{first['id']}/").json()
    assert detail["seed"] == first["seed"] and detail["model"] == "tiny-sd-a"
    response = api.get(first["url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(response.streaming_content))).size == (8, 8)
    download = api.get(first["url"], {"download": "1"})
    assert "attachment" in download["Content-Disposition"] and download["Content-Type"] == "application/octet-stream"


def test_deleting_an_image_removes_its_row_and_file(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    api = APIClient()
    image = make_job(None, "a fox", count=1).images.get()
    path = image.file.path
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/images/{image.pk}/").status_code == 204
    assert not GeneratedImage.objects.filter(pk=image.pk).exists()
    import os

    assert not os.path.exists(path)


def test_deleting_a_job_removes_its_images_and_files(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    import os

    api = APIClient()
    job = make_job(None, "a fox")
    paths = [image.file.path for image in job.images.all()]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    assert not GeneratedImage.objects.filter(job_id=job.pk).exists()
    assert not any(os.path.exists(path) for path in paths)


def test_other_users_images_are_hidden() -> None:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    image = make_job(alice, "mine", count=1).images.get()
    as_bob = APIClient()
    as_bob.force_authenticate(bob)
    assert as_bob.get(f"/api/v1/images/{image.pk}/").status_code == 404
    assert as_bob.get(f"/api/v1/images/{image.pk}/file/").status_code == 404
    assert as_bob.delete(f"/api/v1/images/{image.pk}/").status_code == 404
    assert as_bob.get("/api/v1/images/").json()["count"] == 0
    as_alice = APIClient()
    as_alice.force_authenticate(alice)
    assert as_alice.get(f"/api/v1/images/{image.pk}/file/").status_code == 200
