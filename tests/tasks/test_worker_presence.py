"""Worker presence through real worker processes: readiness and the queue say when no worker serves a queue."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from image_model_domain.jobs import job_cancel
from image_model_domain.models import GenerationJob, WorkerHeartbeat
from tests.conftest import session_queue, wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

FAST_BEATS = {"WORKER_HEARTBEAT_INTERVAL_S": "0.2", "WORKER_HEARTBEAT_TIMEOUT_S": "1"}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ready_with_workers(api: APIClient) -> int:
    return api.get("/readyz?workers=1").status_code


def entry_of(api: APIClient, job_id: str) -> dict:
    return next(entry for entry in api.get("/api/v1/queue/").json() if entry["job"]["id"] == job_id)


def test_readiness_and_the_queue_follow_workers_starting_and_stopping(start_worker, dev_models, settings) -> None:  # noqa: ANN001
    queue = session_queue("presence")
    settings.DIFFUSION_DEFAULT_QUEUE = queue  # this test's own default queue: no shared worker serves it
    settings.WORKER_HEARTBEAT_TIMEOUT_S = 1.0
    api = APIClient()

    # No worker: the web tier is ready, but not with workers; the queued job says why it has no estimate.
    assert api.get("/readyz").status_code == 200
    response = api.get("/readyz?workers=1")
    assert response.status_code == 503
    assert queue in response.json()["checks"]["workers"]
    first = api.post("/api/v1/generations/", {"prompt": "a fox", "model": "tiny-sd-a", "steps": 2}, format="json")
    assert first.status_code == 202 and first.json()["queue"] == queue
    entry = entry_of(api, first.json()["id"])
    assert entry["worker_available"] is False and entry["estimated_start_s"] is None
    assert "No worker" in entry["note"] and queue in entry["note"]

    # A worker starts: it is seen, takes the waiting job, and queued jobs get an estimate again.
    worker = start_worker([queue], env=FAST_BEATS)
    wait_until(lambda: ready_with_workers(api) == 200, "readyz?workers=1 to answer 200")
    assert api.get("/readyz?workers=1").json()["workers"][queue] == 1  # other tests' workers may be listed too
    assert wait_for_job(first.json()["id"], worker=worker).status == "succeeded"
    long = {"prompt": "a long job", "model": "tiny-sd-a", "steps": 150, "num_images": 4}
    running = api.post("/api/v1/generations/", long, format="json").json()
    waiting = api.post("/api/v1/generations/", long, format="json").json()
    entry = entry_of(api, waiting["id"])
    assert entry["worker_available"] is True and entry["estimated_start_s"] > 0 and entry["note"] == ""
    for job_id in (running["id"], waiting["id"]):
        job_cancel(job=GenerationJob.objects.get(pk=job_id))

    # A clean stop removes the worker at once.
    worker.stop()
    assert not WorkerHeartbeat.objects.filter(queues__contains=f",{queue},").exists()
    assert ready_with_workers(api) == 503

    # A killed worker says nothing: it counts as gone once its heartbeat is older than the timeout.
    doomed = start_worker([queue], env=FAST_BEATS)
    wait_until(lambda: ready_with_workers(api) == 200, "the second worker to be seen")
    doomed.kill()
    wait_until(lambda: ready_with_workers(api) == 503, "the killed worker to count as gone", timeout=10)
    # Its stale row, which no longer counts.
    assert WorkerHeartbeat.objects.filter(queues__contains=f",{queue},").count() == 1
    later = api.post("/api/v1/generations/", {"prompt": "b", "model": "tiny-sd-a"}, format="json").json()
    assert entry_of(api, later["id"])["worker_available"] is False
