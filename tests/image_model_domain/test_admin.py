"""The admin lists, filters and searches everything, shows thumbnails, and cancels or retries jobs."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from image_model_domain.models import DLModel, GenerationJob
from tests.image_model_domain.test_api_library import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/image_model_domain/dlmodel/?q=tiny&enabled__exact=1",
        "/admin/image_model_domain/loraadapter/?q=ink",
        "/admin/image_model_domain/generationjob/?status__exact=succeeded&q=fox",
        "/admin/image_model_domain/generatedimage/?q=fox",
        "/admin/dataset_domain/dataset/?q=sample",
        "/admin/dataset_domain/datasetimage/",
    ],
)
def test_every_list_page_answers(admin_client: Client, sample_dataset, path: str) -> None:  # noqa: ANN001
    make_job(None, "a fox")
    response = admin_client.get(path)
    assert response.status_code == 200


def test_image_lists_show_thumbnails(admin_client: Client) -> None:
    job = make_job(None, "a fox")
    page = admin_client.get("/admin/image_model_domain/generatedimage/").content.decode()
    for image in job.images.all():
        assert f'<img src="/api/v1/images/{image.pk}/file/"' in page
        assert admin_client.get(f"/api/v1/images/{image.pk}/file/").status_code == 200  # staff read every file


def test_cancel_and_retry_actions(admin_client: Client) -> None:
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    job = GenerationJob.objects.create(
        kind="text_to_image", params={"model": "tiny-sd-a", "prompt": "a"}, seed=1, queue="q", images_expected=1
    )
    url = "/admin/image_model_domain/generationjob/"
    admin_client.post(url, {"action": "cancel_jobs", "_selected_action": [str(job.pk)]})
    job.refresh_from_db()
    assert job.status == "cancelled"
    admin_client.post(url, {"action": "retry_jobs", "_selected_action": [str(job.pk)]})
    job.refresh_from_db()
    assert job.status == "queued" and not job.cancel_requested
