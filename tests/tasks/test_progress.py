"""Progress, heartbeat and the cancel flag are the pump's work (tasks/progress.py): the denoising loop only counts."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.db import connection

from image_model_domain.events import events_key
from image_model_domain.jobs import job_cancel, job_create_generation
from image_model_domain.lifecycle import job_claim
from image_model_domain.models import GeneratedImage, GenerationJob
from tasks.running import job_run
from tests.conftest import session_queue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def claimed(dev_models, settings):  # noqa: ANN001, ANN201
    """A one-image job of `steps` steps, claimed here and run in this process (no worker takes it)."""
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}

    def make(steps: int) -> GenerationJob:
        job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a red fox", steps=steps, seed=3)
        return job_claim(job_id=job.pk, worker="test")

    return make


def run_counting_queries(job: GenerationJob):  # noqa: ANN201
    """Run the job here; the queries this (the denoising) thread sent, and the run."""
    sent = []

    def record(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        run = job_run(job)
    return sent, run


def progress_steps(settings, job: GenerationJob) -> list[int]:  # noqa: ANN001
    import json

    stream = redis.Redis.from_url(settings.REDIS_URL).xrange(events_key(job.pk))
    return [json.loads(fields[b"data"])["step"] for _, fields in stream if fields[b"event"] == b"progress"]


def test_the_denoising_thread_sends_no_query_per_step_and_every_step_still_arrives(claimed, settings) -> None:  # noqa: ANN001
    settings.JOB_PROGRESS_INTERVAL_S = 0  # progress written at every sync
    short_job, long_job = claimed(2), claimed(16)
    short, short_run = run_counting_queries(short_job)
    long, long_run = run_counting_queries(long_job)
    assert short_run.status == long_run.status == "succeeded", (short_run.error, long_run.error)
    # Inline, each step read the cancel flag and wrote progress: 16 steps were 17 reads and 17 writes here.
    # Now the denoising thread reads and writes them once at most, in the last sync as the job ends (the pump
    # may have written the last step already).
    for sent in (short, long):
        cancel_reads = [sql for sql in sent if sql.startswith("SELECT") and '"cancel_requested"' in sql]
        progress_writes = [sql for sql in sent if sql.startswith("UPDATE") and '"heartbeat_at"' in sql]
        assert len(cancel_reads) <= 1 and len(progress_writes) <= 1, (cancel_reads, progress_writes)
    assert abs(len(long) - len(short)) <= 2, set(long) ^ set(short)

    long_job.refresh_from_db()
    assert long_job.progress_step == long_job.progress_total == 16
    assert progress_steps(settings, long_job) == list(range(1, 17))  # one event per step, in order


def test_a_cancel_the_pump_reads_stops_the_run_within_a_few_steps(claimed, settings) -> None:  # noqa: ANN001
    settings.JOB_PROGRESS_INTERVAL_S = 0
    job = claimed(400)
    cancelled_at = []

    def cancel_once_running() -> None:
        deadline = time.monotonic() + 60
        while GenerationJob.objects.get(pk=job.pk).progress_step < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        job_cancel(job=GenerationJob.objects.get(pk=job.pk))
        cancelled_at.append(GenerationJob.objects.get(pk=job.pk).progress_step)
        connection.close()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    run = job_run(job)
    canceller.join()

    job.refresh_from_db()
    assert run.status == job.status == "cancelled", run.error
    assert job.progress_step < 400 and not GeneratedImage.objects.filter(job=job).exists()
    steps = progress_steps(settings, job)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 400


def test_after_a_claim_the_pump_tells_the_jobs_still_queued_their_new_positions(dev_models, settings) -> None:  # noqa: ANN001
    import json

    from image_model_domain.events import events_forget
    from image_model_domain.lifecycle import jobs_claim
    from tasks.progress import pump

    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}
    first, second = (
        job_create_generation(owner=None, model_name="tiny-sd-a", prompt=prompt, steps=2) for prompt in ("a", "b")
    )
    events_forget(second.pk)  # its "queued" at position 2: only what follows the claim is read below
    assert jobs_claim(job_id=first.pk, worker="test", positions=pump().positions_changed)[0].pk == first.pk

    stream = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + 10
    while not (events := stream.xrange(events_key(second.pk))):
        assert time.monotonic() < deadline, "no position event from the pump"
        time.sleep(0.02)
    assert [(fields[b"event"], json.loads(fields[b"data"])) for _, fields in events] == [(b"queued", {"position": 1})]
