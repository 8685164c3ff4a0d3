"""Operations: warm shutdown loses no job; /metrics on the web tier and on the worker."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest
from rest_framework.test import APIClient

from image_model_domain.jobs import job_create_generation
from image_model_domain.models import GenerationJob
from tests.conftest import free_port, session_queue, wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_sigterm_during_a_job_lets_it_finish(start_worker, dev_models, settings) -> None:  # noqa: ANN001
    worker = start_worker([session_queue("sigterm")])
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-b": session_queue("sigterm")}
    job = job_create_generation(owner=None, model_name="tiny-sd-b", prompt="a fox", steps=60, num_images=2, seed=3)
    wait_for_job(job.pk, statuses=("running",), worker=worker)
    while GenerationJob.objects.get(pk=job.pk).progress_step == 0:
        time.sleep(0.02)
    os.kill(worker.process.pid, signal.SIGTERM)  # what Kubernetes and compose send on a rollout: warm shutdown

    job = wait_for_job(job.pk, worker=worker)
    assert job.status == "succeeded", job.error
    assert job.images.count() == 2
    worker.process.wait(timeout=60)
    assert worker.process.returncode == 0


def test_metrics_after_a_job(start_worker, dev_models, settings, monkeypatch) -> None:  # noqa: ANN001
    port = free_port()
    monkeypatch.setenv("WORKER_METRICS_PORT", str(port))
    worker = start_worker([session_queue("metrics")])
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("metrics")}
    response = APIClient().post(
        "/api/v1/generations/", {"prompt": "a fox", "model": "tiny-sd-a", "steps": 2}, format="json"
    )
    assert response.status_code == 202
    assert wait_for_job(response.json()["id"], worker=worker).status == "succeeded"

    web = APIClient().get("/metrics").content.decode()
    assert 'diffusion_jobs_created_total{kind="text_to_image"}' in web
    assert 'diffusion_jobs{status="succeeded"} 1.0' in web
    assert 'diffusion_http_requests_total{method="POST",status="202"}' in web
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'diffusion_worker_jobs_total{status="succeeded"} 1.0' in scraped
    assert "diffusion_worker_inference_seconds_count 1.0" in scraped
    assert "diffusion_worker_queue_wait_seconds_count 1.0" in scraped
    assert "diffusion_worker_model_loads 1.0" in scraped
    assert "diffusion_worker_resident_models 1.0" in scraped


def test_a_running_worker_picks_up_registry_changes(start_worker, dev_models, monkeypatch) -> None:  # noqa: ANN001
    from image_model_domain.models import DLModel

    monkeypatch.setenv("DIFFUSION_PRELOAD", "true")
    worker = start_worker([session_queue("registry-changes")])

    def wait_for_log(text: str, after: int) -> int:
        deadline = time.monotonic() + 60
        while text not in worker.output()[after:]:
            assert time.monotonic() < deadline, f"{text!r} not in the worker log:\n{worker.output()[after:]}"
            time.sleep(0.1)
        return len(worker.output())

    # Pub/sub delivers to consumers that are listening: let the worker finish starting (it reads the
    # registry itself then, preloading tiny-sd-a) before changing anything.
    mark = wait_for_log("loaded model tiny-sd-a", 0)
    model = DLModel.objects.get(name="tiny-sd-b")
    model.preload = True
    model.save()  # as the admin or PATCH /api/v1/models/tiny-sd-b/ would
    mark = wait_for_log("loaded ['tiny-sd-b']", mark)
    model.enabled = False
    model.save()
    wait_for_log("dropped ['tiny-sd-b']", mark)


def test_worker_logs_are_json_lines_carrying_the_job_id(start_worker, dev_models, settings, monkeypatch) -> None:  # noqa: ANN001
    import json

    monkeypatch.setenv("LOG_FORMAT", "json")
    worker = start_worker([session_queue("json-logs")])
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("json-logs")}
    job = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a fox", steps=2)
    assert wait_for_job(job.pk, worker=worker).status == "succeeded"
    deadline = time.monotonic() + 10
    while "finished: succeeded" not in worker.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    entries = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    mine = [entry for entry in entries if entry.get("job_id") == str(job.pk)]
    messages = [entry["message"] for entry in mine]
    assert "started text_to_image" in messages and "finished: succeeded" in messages
    assert all(entry["level"] and entry["logger"] and entry["time"] for entry in mine)
