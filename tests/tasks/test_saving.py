"""Images are stored by a background saver while the next batch denoises; the job ends only after."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from image_model_domain.jobs import job_create_generation
from image_model_domain.lifecycle import job_claim
from image_model_domain.models import GeneratedImage, GenerationJob
from tasks.running import job_run
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def claimed_job(dev_models, settings):  # noqa: ANN001, ANN201
    """A three-image job run one image a batch, claimed here and run in this process (no worker takes it)."""
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}
    settings.DIFFUSION_BATCH_SIZE = 1

    def make() -> GenerationJob:
        job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a red fox", steps=2, num_images=3)
        return job_claim(job_id=job.pk, worker="test")

    return make


def overlaps(saved, batch: tuple[float, float]) -> bool:  # noqa: ANN001
    return saved.started < batch[1] and saved.finished > batch[0]


def test_a_batch_is_stored_while_the_next_one_denoises(claimed_job, settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_SAVE_QUEUE_DEPTH = 2
    job = claimed_job()
    run = job_run(job)

    assert run.status == "succeeded", run.error
    assert sorted(GeneratedImage.objects.filter(job=job).values_list("index", flat=True)) == [0, 1, 2]
    job.refresh_from_db()
    assert job.status == "succeeded" and job.save_s > 0
    assert [saved.indexes for saved in run.saved] == [(0,), (1,), (2,)] and len(run.batches) == 3
    for saved, batch in zip(run.saved, run.batches, strict=True):
        assert saved.started >= batch[1]  # a batch is stored after it has denoised...
    # ...and while the next one denoises (timestamps from the engine and the saver themselves).
    assert any(overlaps(saved, batch) for saved, batch in zip(run.saved, run.batches[1:], strict=False))


def test_with_a_queue_depth_of_zero_saving_is_inline_and_never_overlaps(claimed_job, settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_SAVE_QUEUE_DEPTH = 0
    run = job_run(claimed_job())
    assert run.status == "succeeded", run.error
    assert not any(overlaps(saved, batch) for saved in run.saved for batch in run.batches)


def test_a_failed_save_fails_the_job_naming_the_image_and_stores_nothing_after_it(claimed_job, settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_SAVE_QUEUE_DEPTH = 2
    job = claimed_job()
    # A row already holding image 1's place makes its insert fail (the unique job+index constraint).
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    squatter = GeneratedImage(
        job=job, index=1, prompt="x", model_name="tiny-sd-a", seed=1, scheduler="euler", steps=1,
        guidance_scale=1.0, width=8, height=8, sha256="x",
    )  # fmt: skip
    squatter.file.save("squatter.png", ContentFile(buffer.getvalue()), save=False)
    squatter.save()

    run = job_run(job)
    job.refresh_from_db()
    assert run.status == job.status == "failed"
    assert "Storing image 1 failed" in job.error and "IntegrityError" in job.error
    assert sorted(GeneratedImage.objects.filter(job=job).values_list("index", flat=True)) == [0, 1]
    assert GeneratedImage.objects.get(job=job, index=1).pk == squatter.pk
    assert not list((settings.MEDIA_ROOT / "generated").rglob(f"{job.pk}-0001*.png"))  # no file without its row


def test_a_worker_given_up_on_stores_no_image_into_the_attempt_that_replaced_it(claimed_job, settings) -> None:  # noqa: ANN001
    from image_model_domain.models import JobStatus
    from services.types import Output, Recipe
    from tasks.saving import ImageRecorder, SaveFailed

    settings.DIFFUSION_SAVE_QUEUE_DEPTH = 0  # stored inline: the failure is raised by save() itself
    stale = claimed_job()
    GenerationJob.objects.filter(pk=stale.pk).update(status=JobStatus.QUEUED, worker="")  # the reconciler
    fresh = job_claim(job_id=stale.pk, worker="w2")
    assert (stale.attempts, fresh.attempts) == (1, 2)
    recipe = Recipe(
        prompt="a red fox", negative_prompt="", model="tiny-sd-a", model_source="dev/tiny-sd-a", model_revision=None,
        loras=(), lora_scale=1.0, scheduler="euler", steps=2, guidance_scale=7.5, strength=None,
        init_image_sha256=None, width=64, height=64, seed=1, dtype="float32", device="cpu", versions={},
    )  # fmt: skip
    late = Output(image=Image.new("RGB", (64, 64), "red"), recipe=recipe, meta={"index": 0})

    with pytest.raises(SaveFailed, match="no longer running attempt 1"):
        ImageRecorder(stale).save([late])
    assert not GeneratedImage.objects.filter(job=stale.pk).exists()
    assert not list(Path(settings.MEDIA_ROOT).rglob(f"{stale.pk}-*.png"))  # the file is gone with the row

    ImageRecorder(fresh).save([Output(image=Image.new("RGB", (64, 64), "blue"), recipe=recipe, meta={"index": 0})])
    stored = GeneratedImage.objects.get(job=fresh.pk)
    assert stored.index == 0 and Image.open(stored.file.path).getpixel((0, 0)) == (0, 0, 255)
