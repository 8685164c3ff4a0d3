"""The claim: one conditional UPDATE, and a retry of it after a database blip keeps the job."""

from __future__ import annotations

import pytest

from image_model_domain.jobs import job_create_generation
from image_model_domain.lifecycle import job_claim
from image_model_domain.models import DLModel, GenerationJob, JobStatus
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db


def test_a_retried_claim_keeps_the_job_for_its_worker_and_nobody_else_gets_it(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=2)

    first = job_claim(job_id=job.pk, worker="w1:10")
    assert first is not None and first.status == JobStatus.RUNNING and first.attempts == 1
    # The same delivery retrying (the UPDATE had committed before the connection dropped) still has it...
    again = job_claim(job_id=job.pk, worker="w1:10")
    assert again is not None and again.pk == job.pk
    # ...without counting another attempt; a redelivery to any other worker process gets nothing.
    assert GenerationJob.objects.get(pk=job.pk).attempts == 1
    assert job_claim(job_id=job.pk, worker="w2:20") is None
    assert GenerationJob.objects.get(pk=job.pk).worker == "w1:10"
