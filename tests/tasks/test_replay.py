"""An image-to-image PNG names its init image by SHA-256, so the PNG alone is enough to replay it."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from dataset_domain.models import DatasetImage
from image_model_domain.jobs import job_create_generation
from image_model_domain.models import DLModel, GeneratedImage
from services.engine import DiffusersEngine, EngineConfig
from services.images import prepare_source
from services.pngmeta import read_recipe
from services.types import GenerationRequest, ImageTask
from tasks.specs import model_spec
from tests.conftest import wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_an_img2img_png_records_its_init_image_and_replays_from_the_recipe(
    celery_worker, dev_models, sample_dataset
) -> None:  # noqa: ANN001
    source = sample_dataset.images.get(image__endswith="glass-orbs.png")
    with source.image.open("rb") as handle:
        data = handle.read()
    upload = SimpleUploadedFile("init.png", data, content_type="image/png")
    job = job_create_generation(
        owner=None, model_name="tiny-sd-a", prompt="a fox", steps=6, strength=0.6, seed=321, init_image=upload
    )
    sha256 = hashlib.sha256(data).hexdigest()
    assert job.init_image_sha256 == sha256
    job = wait_for_job(job.pk, worker=celery_worker)
    assert job.status == "succeeded", job.error
    image = GeneratedImage.objects.get(job=job)
    with image.file.open("rb") as handle:
        png = handle.read()
    recipe = read_recipe(png)
    assert recipe["init_image_sha256"] == image.source_sha256 == sha256
    with Image.open(io.BytesIO(png)) as stored:
        assert f"Init image SHA-256: {sha256}" in stored.text["parameters"]
        stored_pixels = np.asarray(stored.convert("RGB"), dtype=np.int16)

    # Replay from the PNG alone: find the init image by its hash, rerun the recipe in this process.
    init_row = DatasetImage.objects.get(sha256=recipe["init_image_sha256"])
    with init_row.image.open("rb") as handle, Image.open(handle) as init:
        init = prepare_source(init, max(recipe["width"], recipe["height"]))
    replay = GenerationRequest(
        model=model_spec(DLModel.objects.get(name=recipe["model"])),
        items=[ImageTask(prompt=recipe["prompt"], seed=recipe["seed"], init_image=init, meta={"index": 0})],
        steps=recipe["steps"],
        strength=recipe["strength"],
        guidance_scale=recipe["guidance_scale"],
        scheduler=recipe["scheduler"],
    )
    outputs: list = []
    DiffusersEngine(EngineConfig()).generate(replay, on_batch=outputs.extend)
    replayed = np.asarray(outputs[0].image, dtype=np.int16)
    assert replayed.shape == stored_pixels.shape
    assert np.abs(replayed - stored_pixels).max() <= 1  # another process: a rare float rounding at most
