"""job_requests: what a worker runs for a job row, including rows written before the plan was complete."""

from __future__ import annotations

import pytest

from image_model_domain.jobs import job_create_generation, job_create_random_diffusion
from image_model_domain.models import DLModel, GenerationJob
from tasks.specs import job_requests
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def registry(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("nobody-listens")
    settings.DIFFUSION_BATCH_SIZE = 2
    DLModel.objects.create(name="model-a", source="dev/tiny-sd-a", resolution=64, default_scheduler="ddim")
    DLModel.objects.create(name="model-b", source="dev/tiny-sd-b", resolution=64, default_scheduler="euler")


def as_written_before_the_plan(job: GenerationJob) -> GenerationJob:
    """The same row as the service wrote it before the plan held a generation's batch size and seeds, and
    a random diffusion's schedulers (its batch size it always held)."""
    params = dict(job.params)
    if "items" in params:
        params["items"] = [{k: v for k, v in item.items() if k != "scheduler"} for item in params["items"]]
    else:
        del params["batch_size"], params["seeds"]
    GenerationJob.objects.filter(pk=job.pk).update(params=params)
    return GenerationJob.objects.get(pk=job.pk)


def test_a_generation_runs_its_planned_seeds_scheduler_and_batch_size() -> None:
    job = job_create_generation(owner=None, model_name="model-a", prompt="a fox", num_images=3, steps=4, seed=40)
    (request,) = job_requests(job)
    assert [item.seed for item in request.items] == [40, 41, 42] and [i.meta["index"] for i in request.items] == [
        0,
        1,
        2,
    ]
    assert (request.scheduler, request.batch_size, request.strength, request.steps) == ("ddim", 2, None, 4)
    assert (request.items[0].width, request.items[0].height) == (64, 64) and request.model.name == "model-a"


def test_an_old_generation_row_runs_as_it_always_did() -> None:
    job = job_create_generation(owner=None, model_name="model-b", prompt="a fox", num_images=3, steps=4, seed=40)
    assert job_requests(as_written_before_the_plan(job)) == job_requests(job)


def test_an_old_random_diffusion_row_runs_as_it_always_did(sample_dataset) -> None:  # noqa: ANN001
    job = job_create_random_diffusion(owner=None, dataset=sample_dataset, prompt_list=["a", "b"], steps=4, seed=3)
    requests = job_requests(job)
    assert [(r.model.name, r.scheduler) for r in requests] == [("model-a", "ddim"), ("model-b", "euler")]
    assert sorted(item.meta["index"] for r in requests for item in r.items) == list(range(len(job.params["items"])))
    assert job_requests(as_written_before_the_plan(job)) == requests


def test_a_model_removed_since_the_job_was_made_fails_it_by_name() -> None:
    job = job_create_generation(owner=None, model_name="model-a", prompt="a fox", steps=4)
    DLModel.objects.filter(name="model-a").delete()
    with pytest.raises(LookupError, match="'model-a' is no longer registered"):
        job_requests(GenerationJob.objects.get(pk=job.pk))
