"""Progress totals and queue estimates count the denoising steps diffusers really runs."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from rest_framework.test import APIClient

from image_model_domain.models import DLModel, GenerationJob
from tests.conftest import queue_history_of_a_tenth_of_a_second_a_step

pytestmark = pytest.mark.django_db


def png() -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "init.png"
    return buffer


@pytest.fixture
def api(db: None) -> APIClient:
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    return APIClient()


def test_img2img_progress_and_the_queue_estimate_count_steps_times_strength(api: APIClient) -> None:
    queue_history_of_a_tenth_of_a_second_a_step()
    img2img = api.post(
        "/api/v1/generations/",
        {"prompt": "a fox", "steps": 150, "strength": 0.2, "num_images": 2, "init_image": png()},
        format="multipart",
    )
    assert img2img.status_code == 202, img2img.content
    assert img2img.json()["progress"]["total"] == 2 * 30  # int(150 * 0.2) steps per image, not 150
    text = api.post("/api/v1/generations/", {"prompt": "b", "steps": 10}, format="json").json()
    assert text["progress"]["total"] == 10  # text-to-image runs every step

    entries = {entry["job"]["id"]: entry for entry in api.get("/api/v1/queue/").json()}
    assert entries[text["id"]]["estimated_start_s"] == pytest.approx(60 * 0.1)


def test_random_diffusion_progress_counts_steps_times_strength(api: APIClient, sample_dataset) -> None:  # noqa: ANN001
    body = {"dataset": sample_dataset.pk, "prompt_list": ["a cat"], "steps": 33, "strength": 0.5}
    job = api.post("/api/v1/random-diffusions/", body, format="json").json()
    assert job["progress"]["total"] == int(33 * 0.5) * job["images_expected"]


def test_a_strength_that_runs_no_step_is_refused_naming_strength(api: APIClient, sample_dataset) -> None:  # noqa: ANN001
    response = api.post(
        "/api/v1/generations/",
        {"prompt": "a fox", "steps": 10, "strength": 0.05, "init_image": png()},
        format="multipart",
    )
    assert response.status_code == 400 and "strength" in response.json()["errors"], response.content
    body = {"dataset": sample_dataset.pk, "prompt_list": ["a cat"], "steps": 10, "strength": 0.05}
    response = api.post("/api/v1/random-diffusions/", body, format="json")
    assert response.status_code == 400 and "strength" in response.json()["errors"], response.content
    assert not GenerationJob.objects.exists()
