"""Creating jobs: the row holds the whole plan the worker runs, and bad requests name their field."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from image_model_domain.jobs import job_create_generation, job_create_random_diffusion
from image_model_domain.models import DLModel, LoraAdapter
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def registry(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("nobody-listens")
    settings.DIFFUSION_BATCH_SIZE = 3
    DLModel.objects.create(name="model-a", source="dev/tiny-sd-a", resolution=64, default_scheduler="ddim")
    DLModel.objects.create(name="model-b", source="dev/tiny-sd-b", resolution=64, default_scheduler="euler")
    for name, scale in (("ink", 0.6), ("glow", 1.0), ("dots", 1.0)):
        LoraAdapter.objects.create(name=name, source="dev/lora", weight_name="w.safetensors", default_scale=scale)


def png_upload(size: tuple[int, int] = (64, 48)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buffer, format="PNG")
    return SimpleUploadedFile("init.png", buffer.getvalue(), content_type="image/png")


def test_a_text_to_image_job_holds_its_whole_plan() -> None:
    job = job_create_generation(
        owner=None, model_name="model-a", prompt="a fox", num_images=3, steps=4, seed=2**32 - 2, loras=[{"name": "ink"}]
    )
    assert job.params == {
        "model": "model-a",
        "prompt": "a fox",
        "negative_prompt": "",
        "num_images": 3,
        "steps": 4,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",  # the model's default, decided now
        "loras": [{"name": "ink", "scale": 0.6}],  # the adapter's default scale
        "lora_scale": 1.0,
        "strength": None,  # text-to-image has none
        "preview": False,
        "batch_size": 3,
        "seeds": [2**32 - 2, 2**32 - 1, 0],  # image i: the request seed + i, wrapping at 2**32
    }
    assert job.seed == 2**32 - 2 and job.kind == "text_to_image" and job.progress_total == 12


def test_a_random_seed_is_drawn_once_and_every_image_seed_follows_it() -> None:
    job = job_create_generation(owner=None, model_name="model-b", prompt="a fox", num_images=2, steps=4)
    assert job.seed > 0 and job.params["seeds"] == [job.seed, job.seed + 1]


def test_an_image_to_image_job_keeps_its_strength() -> None:
    job = job_create_generation(
        owner=None, model_name="model-b", prompt="a fox", steps=10, strength=0.5, init_image=png_upload(), seed=9
    )
    assert job.kind == "image_to_image" and job.params["strength"] == 0.5 and job.params["scheduler"] == "euler"
    assert job.params["seeds"] == [9] and job.progress_total == 5 and job.init_image_sha256


def test_a_random_diffusion_decides_each_images_model_prompt_seed_and_scheduler(sample_dataset) -> None:  # noqa: ANN001
    job = job_create_random_diffusion(owner=None, dataset=sample_dataset, prompt_list=["a", "b"], steps=4, seed=7)
    items = job.params["items"]
    assert len(items) == sample_dataset.images.count() and job.params["batch_size"] == 3
    assert {item["model"] for item in items} == {"model-a", "model-b"}
    for item in items:
        assert item["scheduler"] == {"model-a": "ddim", "model-b": "euler"}[item["model"]]
        assert item["seed"] == 7 + item["index"] and item["prompt"] in ("a", "b")
    asked = job_create_random_diffusion(
        owner=None, dataset=sample_dataset, prompt_list=["a"], steps=4, seed=7, scheduler="heun", batch_size=2
    )
    assert {item["scheduler"] for item in asked.params["items"]} == {"heun"} and asked.params["batch_size"] == 2


GENERATION_ERRORS = [
    ({"model_name": "nope"}, "model"),
    ({"scheduler": "nope"}, "scheduler"),
    ({"width": 65}, "width"),
    ({"height": 100}, "height"),
    ({"loras": [{"name": "ink"}, {"name": "glow"}, {"name": "dots"}]}, "loras"),
    ({"loras": [{"name": "ink"}, {"name": "ink"}]}, "loras"),
    ({"loras": [{"name": "nope"}]}, "loras"),
    ({"init_image": "png", "strength": 0.1, "steps": 5}, "strength"),
]


@pytest.mark.parametrize(("kwargs", "field"), GENERATION_ERRORS)
def test_a_bad_generation_request_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    if kwargs.get("init_image") == "png":
        kwargs = {**kwargs, "init_image": png_upload()}
    with pytest.raises(ValidationError) as raised:
        job_create_generation(owner=None, **{"model_name": "model-a", "prompt": "a fox", **kwargs})
    assert list(raised.value.message_dict) == [field]


RANDOM_ERRORS = [
    ({"prompt_list": []}, "prompt_list"),
    ({"image_ids": [10**9]}, "image_ids"),
    ({"model_names": ["nope"]}, "models"),
    ({"scheduler": "nope"}, "scheduler"),
    ({"strength": 0.1, "steps": 5}, "strength"),
]


@pytest.mark.parametrize(("kwargs", "field"), RANDOM_ERRORS)
def test_a_bad_random_diffusion_request_names_its_field(sample_dataset, kwargs: dict[str, Any], field: str) -> None:  # noqa: ANN001
    with pytest.raises(ValidationError) as raised:
        job_create_random_diffusion(owner=None, dataset=sample_dataset, **{"prompt_list": ["a"], **kwargs})
    assert list(raised.value.message_dict) == [field]
