"""Other checkpoint kinds end to end on a real worker: the SDXL family and single-file checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from PIL import Image
from rest_framework.test import APIClient

from devtools.singlefile import write_single_file
from image_model_domain.jobs import job_create_generation
from image_model_domain.models import GeneratedImage, GenerationJob
from services.pngmeta import read_recipe
from tests.conftest import wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def png_of(job: GenerationJob) -> tuple[Image.Image, dict]:
    (image,) = GeneratedImage.objects.filter(job=job)
    with image.file.open("rb") as handle:
        data = handle.read()
    return Image.open(io.BytesIO(data)), read_recipe(data)


def finished(job: GenerationJob, worker) -> GenerationJob:  # noqa: ANN001
    job = wait_for_job(job.pk, worker=worker)
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("root", is_staff=True))
    return client


def test_an_sdxl_job_makes_a_png_of_its_size_and_its_lora_changes_it(celery_worker, dev_models) -> None:  # noqa: ANN001
    call_command("build_dev_models", shape=["tiny-xl"], stdout=io.StringIO())
    lora = [{"name": "tiny-sdxl-lora", "scale": 1.0}]
    jobs = [
        job_create_generation(owner=None, model_name="tiny-sdxl", prompt="a red fox", steps=2, seed=5, **extra)
        for extra in ({"width": 96, "height": 64}, {"width": 96, "height": 64, "loras": lora})
    ]
    (base, base_recipe), (styled, styled_recipe) = (png_of(finished(job, celery_worker)) for job in jobs)
    assert base.format == "PNG" and base.size == styled.size == (96, 64)
    assert base_recipe["model"] == "tiny-sdxl" and styled_recipe["loras"] == lora
    difference = np.abs(np.asarray(styled, dtype=np.int16) - np.asarray(base, dtype=np.int16)).mean()
    assert difference > 2


def test_a_single_file_checkpoint_registered_through_the_api_draws_its_directorys_pixels(
    celery_worker,  # noqa: ANN001
    dev_models,  # noqa: ANN001
    staff: APIClient,
) -> None:
    write_single_file(
        settings.MODEL_ROOT / "dev" / "tiny-sd-a", settings.MODEL_ROOT / "single" / "tiny-sd-a.safetensors"
    )
    body = {
        "name": "tiny-sd-a-single",
        "source": "single/tiny-sd-a.safetensors",
        "family": "sd1",
        "resolution": 64,
        "metadata": {"config": "dev/tiny-sd-a"},
    }
    response = staff.post("/api/v1/models/", body, format="json")
    assert response.status_code == 201, response.content
    jobs = [
        job_create_generation(owner=None, model_name=name, prompt="a red fox", steps=2, seed=11)
        for name in ("tiny-sd-a-single", "tiny-sd-a")
    ]
    (single, single_recipe), (directory, _) = (png_of(finished(job, celery_worker)) for job in jobs)
    assert single_recipe["model"] == "tiny-sd-a-single"
    assert np.array_equal(np.asarray(single), np.asarray(directory))
