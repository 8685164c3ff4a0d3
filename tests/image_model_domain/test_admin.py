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


def test_the_cancel_action_leaves_a_finished_job_as_it_was_and_says_why(admin_client: Client) -> None:
    job = make_job(None, "a fox")
    url = "/admin/image_model_domain/generationjob/"
    response = admin_client.post(url, {"action": "cancel_jobs", "_selected_action": [str(job.pk)]}, follow=True)
    job.refresh_from_db()
    assert job.status == "succeeded" and not job.cancel_requested
    assert "nothing to cancel" in response.content.decode() and "Asked 0 jobs to cancel." in response.content.decode()


def test_change_pages_link_files_through_the_api_never_media(admin_client: Client, sample_dataset) -> None:  # noqa: ANN001
    import re

    from django.core.files.base import ContentFile

    job = make_job(None, "a fox", count=1)
    job.init_image.save(f"{job.pk}.png", ContentFile(b"not checked here"), save=True)
    image = job.images.get()
    dataset_image = sample_dataset.images.first()
    pages = [
        f"/admin/image_model_domain/generationjob/{job.pk}/change/",
        f"/admin/image_model_domain/generatedimage/{image.pk}/change/",
        f"/admin/dataset_domain/dataset/{sample_dataset.pk}/change/",
        "/admin/dataset_domain/datasetimage/",
    ]
    for page in pages:
        html = admin_client.get(page).content.decode()
        assert "/media/" not in html, page
        for url in re.findall(r'(?:href|src)="(/api/v1/[^"]+/(?:file|init-image)/)"', html):
            assert admin_client.get(url).status_code == 200, (page, url)
    html = admin_client.get(pages[0]).content.decode()
    assert f'href="/api/v1/jobs/{job.pk}/init-image/"' in html
    html = admin_client.get(pages[1]).content.decode()
    assert f'href="/api/v1/images/{image.pk}/file/"' in html
    html = admin_client.get(pages[2]).content.decode()
    assert f'href="/api/v1/datasets/{sample_dataset.pk}/images/{dataset_image.pk}/file/"' in html
