"""The claim: one conditional UPDATE, and a retry of it after a database blip keeps the job."""

from __future__ import annotations

import pytest

from image_model_domain.jobs import job_create_generation
from image_model_domain.lifecycle import job_claim, jobs_claim
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


def test_a_job_run_again_starts_a_fresh_event_stream(settings) -> None:  # noqa: ANN001
    import redis

    from image_model_domain.events import event_publish, events_key

    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=2)
    assert job_claim(job_id=job.pk, worker="w1:10") is not None
    event_publish(job.pk, "image", {"id": 1, "index": 0, "url": "/api/v1/images/1/file/"})
    # Its worker died; the reconciler put it back, and another worker claims it.
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    assert job_claim(job_id=job.pk, worker="w2:20").attempts == 2

    names = [fields[b"event"] for _, fields in redis.Redis.from_url(settings.REDIS_URL).xrange(events_key(job.pk))]
    assert names == [b"started"]  # no image event of the first attempt is left for a client to replay


def test_a_worker_given_up_on_cannot_finish_the_attempt_that_replaced_it(settings) -> None:  # noqa: ANN001
    from image_model_domain.lifecycle import job_finish

    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=2)
    stale = job_claim(job_id=job.pk, worker="w1:10")
    # w1 stopped answering; the reconciler queued the job again and w2 runs it now.
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, worker="")
    fresh = job_claim(job_id=job.pk, worker="w2:20")
    assert (stale.attempts, fresh.attempts) == (1, 2)

    # w1 comes back and reports its (old) outcome: it must not end w2's attempt.
    assert job_finish(job_id=job.pk, status=JobStatus.FAILED, error="late", attempt=stale.attempts) is False
    row = GenerationJob.objects.get(pk=job.pk)
    assert (row.status, row.error, row.worker) == (JobStatus.RUNNING, "", "w2:20")

    assert job_finish(job_id=job.pk, status=JobStatus.SUCCEEDED, attempt=fresh.attempts) is True
    assert GenerationJob.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_a_claim_takes_the_oldest_queued_jobs_that_can_share_its_batch_and_no_others(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    DLModel.objects.create(name="tiny-sd-b", source="dev/tiny-sd-b", resolution=64)

    def submit(**kwargs) -> GenerationJob:  # noqa: ANN003
        return job_create_generation(
            **{"owner": None, "model_name": "tiny-sd-a", "prompt": "a fox", "steps": 2} | kwargs
        )

    leader = submit(prompt="first", seed=1)
    others = {
        "other prompt and seed": submit(prompt="a lighthouse", seed=9),
        "other model": submit(model_name="tiny-sd-b"),
        "other steps": submit(steps=3),
        "other guidance": submit(guidance_scale=5.0),
        "other size": submit(width=32),
        "other scheduler": submit(scheduler="ddim"),
        "two images (fits)": submit(num_images=2),
        "three images (no room left)": submit(num_images=3),
        "one more (no room left)": submit(),
    }
    jobs = jobs_claim(job_id=leader.pk, worker="w1:10", batch_images=4)

    assert [job.pk for job in jobs] == [leader.pk, others["other prompt and seed"].pk, others["two images (fits)"].pk]
    rows = GenerationJob.objects.in_bulk([job.pk for job in jobs])
    assert {(row.status, row.worker, row.attempts, row.started_at) for row in rows.values()} == {
        (JobStatus.RUNNING, "w1:10", 1, rows[leader.pk].started_at)
    }
    left = GenerationJob.objects.filter(status=JobStatus.QUEUED).count()
    assert left == len(others) - 2
    # The absorbed jobs' own messages find them running and do nothing, as any redelivery does.
    assert job_claim(job_id=others["other prompt and seed"].pk, worker="w2:20") is None
    # A retry of the same claim after a database blip gets the same jobs back.
    again = jobs_claim(job_id=leader.pk, worker="w1:10", batch_images=4)
    assert [job.pk for job in again] == [job.pk for job in jobs]


def test_with_cross_job_batching_off_a_claim_takes_one_job(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    settings.DIFFUSION_CROSS_JOB_BATCHING = False
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    first, second = (job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox") for _ in range(2))
    assert [job.pk for job in jobs_claim(job_id=first.pk, worker="w1:10", batch_images=4)] == [first.pk]
    assert GenerationJob.objects.get(pk=second.pk).status == JobStatus.QUEUED


def test_a_retried_claim_gets_back_its_own_companions_only(settings) -> None:  # noqa: ANN001
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    DLModel.objects.create(name="tiny-sd-b", source="dev/tiny-sd-b", resolution=64)
    # An earlier run of this worker process whose outcome was never recorded (the database went away):
    # its job is still RUNNING under the same name, with another model.
    earlier = job_create_generation(owner=None, model_name="tiny-sd-b", prompt="a cat")
    assert [job.pk for job in jobs_claim(job_id=earlier.pk, worker="w1:10", batch_images=4)] == [earlier.pk]

    leader = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", seed=1)
    companion = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a lighthouse", seed=2)
    first = jobs_claim(job_id=leader.pk, worker="w1:10", batch_images=4)
    assert [job.pk for job in first] == [leader.pk, companion.pk]
    # The same claim retried (its UPDATE had committed): the same two, not the earlier run's job.
    again = jobs_claim(job_id=leader.pk, worker="w1:10", batch_images=4)
    assert [job.pk for job in again] == [leader.pk, companion.pk]


def test_a_worker_given_up_on_stops_at_its_next_step_and_leaves_the_new_attempt_alone(settings) -> None:  # noqa: ANN001
    from image_model_domain.lifecycle import ProgressReporter

    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=10)
    stale = job_claim(job_id=job.pk, worker="w1:10")
    stale_progress = ProgressReporter(str(job.pk), 10, interval_s=0, attempt=stale.attempts)
    assert stale_progress.step() is True
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, worker="")  # the reconciler
    fresh = job_claim(job_id=job.pk, worker="w2:20")
    fresh_progress = ProgressReporter(str(job.pk), 10, interval_s=0, attempt=fresh.attempts)
    assert fresh_progress.step() is True
    heartbeat = GenerationJob.objects.get(pk=job.pk).heartbeat_at

    assert [stale_progress.step() for _ in range(3)] == [False, False, False]  # told to stop, as a cancel
    row = GenerationJob.objects.get(pk=job.pk)
    assert (row.progress_step, row.heartbeat_at, row.worker) == (1, heartbeat, "w2:20")  # nothing written
    assert fresh_progress.step() is True and GenerationJob.objects.get(pk=job.pk).progress_step == 2


def test_after_its_last_sync_a_reporter_writes_and_publishes_nothing(settings) -> None:  # noqa: ANN001
    import json

    import redis

    from image_model_domain.events import events_key
    from image_model_domain.lifecycle import ProgressReporter

    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_claim(
        job_id=job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=10).pk, worker="w1"
    )
    reporter = ProgressReporter(str(job.pk), 10, interval_s=0, attempt=job.attempts)
    assert reporter.step() is True
    reporter.sync(last=True)  # the run is done with the job (its outcome comes next)
    heartbeat = GenerationJob.objects.get(pk=job.pk).heartbeat_at

    reporter.advance(1)
    reporter.sync()  # a pump that had taken the job up before the run let it go
    row = GenerationJob.objects.get(pk=job.pk)
    assert (row.progress_step, row.heartbeat_at) == (1, heartbeat)
    stream = redis.Redis.from_url(settings.REDIS_URL).xrange(events_key(job.pk))
    assert [json.loads(fields[b"data"])["step"] for _, fields in stream if fields[b"event"] == b"progress"] == [1]


def test_the_heartbeat_is_written_only_after_the_run_said_it_is_alive(settings) -> None:  # noqa: ANN001
    from image_model_domain.lifecycle import ProgressReporter

    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("claims")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = job_claim(
        job_id=job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=10).pk, worker="w1"
    )
    claimed_heartbeat = GenerationJob.objects.get(pk=job.pk).heartbeat_at
    reporter = ProgressReporter(str(job.pk), 10, interval_s=0, attempt=job.attempts)

    reporter.sync()  # the pump's thread, while the run is stuck inside the model: no heartbeat for it
    reporter.sync()
    assert GenerationJob.objects.get(pk=job.pk).heartbeat_at == claimed_heartbeat
    assert reporter.advance(0) is True  # a step of the pipeline call (or of another job's, while this one waits)
    reporter.sync()
    assert GenerationJob.objects.get(pk=job.pk).heartbeat_at > claimed_heartbeat
