"""Database queries per request: a submit costs a fixed few, and list pages do not grow with their rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from image_model_domain.events import queue_position
from image_model_domain.models import DLModel, GenerationJob
from tests.conftest import session_queue
from tests.image_model_domain.test_api_library import make_job

# Model lookup; BEGIN, advisory lock, cap count, INSERT, enqueue time, COMMIT; then, once committed,
# the queue position (counted once, for the event and the answer alike).
QUERIES_PER_SUBMIT = 8
BODY = {"prompt": "a lighthouse at dusk", "model": "tiny-sd-a", "steps": 20}


def statements(context: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in context.captured_queries]


@pytest.mark.django_db(transaction=True)  # commits for real, so the enqueue runs as in production
def test_a_submit_costs_a_fixed_number_of_queries_and_answers_what_a_read_of_the_job_answers(settings) -> None:  # noqa: ANN001
    # A queue no worker reads: the suite's shared worker would otherwise take the first job.
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("submit-queries")
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    api = APIClient()
    assert api.post("/api/v1/generations/", BODY, format="json").status_code == 202  # one job ahead

    with CaptureQueriesContext(connection) as context:
        response = api.post("/api/v1/generations/", BODY, format="json")

    assert response.status_code == 202, response.content
    assert len(context.captured_queries) <= QUERIES_PER_SUBMIT, "\n".join(statements(context))
    assert statements(context).count("COMMIT") == 1  # one commit (one WAL flush) per submit
    assert all(sql.startswith("SELECT") for sql in statements(context)[statements(context).index("COMMIT") + 1 :])
    counts = [sql for sql in statements(context) if sql.startswith("SELECT COUNT(*)")]
    assert len(counts) == 2  # the submitter's cap, and the position: not counted again for the answer
    body = response.json()
    assert body["position"] == 2 and body["images"] == []
    assert body == api.get(f"/api/v1/jobs/{body['id']}/").json()  # no re-read was needed to answer


def queued_job(owner: object, minutes_ago: int) -> GenerationJob:
    job = GenerationJob.objects.create(
        kind="text_to_image",
        owner=owner,
        params={"model": "tiny-sd-a", "prompt": "a"},
        seed=1,
        queue="q",
        images_expected=1,
    )
    GenerationJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=minutes_ago))
    return job


def add_jobs(offset: int, count: int) -> None:
    """`count` queued jobs, one running, and `count` // 5 (at least one) finished with two images each; anonymous."""
    for minute in range(offset, offset + count):
        queued_job(None, minute)
    GenerationJob.objects.filter(pk=queued_job(None, offset + count).pk).update(status="running")
    for _ in range(max(1, count // 5)):
        make_job(None, "a fox")


def queries_of(api: APIClient, path: str) -> tuple[int, list[dict]]:
    with CaptureQueriesContext(connection) as context:
        response = api.get(path)
    assert response.status_code == 200, response.content
    body = response.json()
    return len(context.captured_queries), body["results"] if isinstance(body, dict) else body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/images/", "/api/v1/queue/"])
def test_a_list_page_costs_the_same_queries_whatever_its_number_of_rows(path: str) -> None:
    api = APIClient()
    add_jobs(0, 1)
    few, rows = queries_of(api, path)
    assert len(rows) >= 2
    add_jobs(100, 20)
    many, more_rows = queries_of(api, path)
    assert len(more_rows) >= 4 * len(rows)
    assert many == few


@pytest.mark.django_db
def test_positions_on_a_list_page_are_each_queued_jobs_place_in_the_queue() -> None:
    api = APIClient()
    add_jobs(0, 5)
    jobs = api.get("/api/v1/jobs/").json()["results"]
    assert [job["position"] for job in jobs if job["status"] == "queued"] == [1, 2, 3, 4, 5][::-1]  # newest first
    for job in jobs:
        row = GenerationJob.objects.get(pk=job["id"])
        assert job["position"] == (queue_position(row) if row.status == "queued" else None)
    queue = api.get("/api/v1/queue/").json()
    assert [entry["position"] for entry in queue] == [None, 1, 2, 3, 4, 5]  # the running job first
    assert [entry["job"]["position"] for entry in queue] == [None, 1, 2, 3, 4, 5]
