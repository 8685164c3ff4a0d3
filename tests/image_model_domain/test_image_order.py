"""A job's images come back in index order, whatever order their batches were saved in."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.image_model_domain.test_api_library import make_job

pytestmark = pytest.mark.django_db


def test_job_and_image_lists_give_each_jobs_images_in_index_order() -> None:
    api = APIClient()
    older = make_job(None, "older", save_order=[2, 3, 0, 1])  # batch 2-3 stored before 0-1
    newer = make_job(None, "newer", save_order=[1, 0])

    assert [image["index"] for image in api.get(f"/api/v1/jobs/{older.pk}/").json()["images"]] == [0, 1, 2, 3]
    jobs = api.get("/api/v1/jobs/").json()["results"]
    assert [[image["index"] for image in job["images"]] for job in jobs] == [[0, 1], [0, 1, 2, 3]]
    by_job = api.get("/api/v1/images/", {"job": str(older.pk)}).json()["results"]
    assert [image["index"] for image in by_job] == [0, 1, 2, 3]
    listing = api.get("/api/v1/images/").json()["results"]
    assert [(image["job"], image["index"]) for image in listing] == [
        (str(newer.pk), 0),
        (str(newer.pk), 1),
        *[(str(older.pk), index) for index in range(4)],
    ]
