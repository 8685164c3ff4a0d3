"""Hot reads come from the cache (Redis in tests, as in production) and change when the data does."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from image_model_domain.models import DLModel, GenerationJob
from tests.image_model_domain.test_api_library import make_job

pytestmark = pytest.mark.django_db


def descriptions(api: APIClient) -> dict[str, str]:
    return {row["name"]: row["description"] for row in api.get("/api/v1/models/").json()["results"]}


def test_the_model_list_is_cached_until_a_row_is_saved(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    api = APIClient()
    with django_capture_on_commit_callbacks(execute=True):
        model = DLModel.objects.create(name="m1", source="dev/m1", description="first")
    assert descriptions(api) == {"m1": "first"}
    DLModel.objects.filter(pk=model.pk).update(description="behind the cache's back")  # no save(): no bump
    assert descriptions(api) == {"m1": "first"}  # served from the cache
    with django_capture_on_commit_callbacks(execute=True):
        model.description = "second"
        model.save()
    assert descriptions(api) == {"m1": "second"}
    with django_capture_on_commit_callbacks(execute=True):
        model.delete()
    assert descriptions(api) == {}


def test_a_finished_job_is_cached_until_it_changes(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    api = APIClient()
    job = make_job(None, "a fox", count=2)
    url = f"/api/v1/jobs/{job.pk}/"
    assert len(api.get(url).json()["images"]) == 2
    GenerationJob.objects.filter(pk=job.pk).update(error="behind the cache's back")
    assert api.get(url).json()["error"] == ""  # served from the cache
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/images/{job.images.first().pk}/").status_code == 204
    body = api.get(url).json()
    assert len(body["images"]) == 1 and body["error"] == "behind the cache's back"
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_an_active_job_is_never_cached() -> None:
    api = APIClient()
    job = make_job(None, "a fox", count=1)
    GenerationJob.objects.filter(pk=job.pk).update(status="running", progress_step=1, progress_total=10)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["progress"]["step"] == 1
    GenerationJob.objects.filter(pk=job.pk).update(progress_step=5)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["progress"]["step"] == 5
