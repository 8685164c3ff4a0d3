"""Stored files only through the API's checked views: no /media/, no reading another user's files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from PIL import Image
from rest_framework.test import APIClient

from image_model_domain.models import GeneratedImage, GenerationJob
from tests.image_model_domain.test_api_library import make_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:  # noqa: ANN001
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MEDIA_ACCEL_REDIRECT = ""
    return tmp_path / "media"


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def img2img_job(owner: User) -> tuple[GenerationJob, bytes]:
    job = make_job(owner, "a secret fox", count=1)
    data = png_bytes((1, 2, 3))
    job.init_image.save(f"{job.pk}.png", ContentFile(data), save=True)
    return job, data


def test_only_the_owner_and_staff_read_generated_and_init_images(media: Path) -> None:
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    staff = User.objects.create_user("root", is_staff=True)
    job, init_data = img2img_job(alice)
    image = job.images.get()
    image_url, init_url = f"/api/v1/images/{image.pk}/file/", f"/api/v1/jobs/{job.pk}/init-image/"

    body = client_for(alice).get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["init_image"] == f"http://testserver{init_url}"
    assert body["images"][0]["url"] == f"http://testserver{image_url}"
    for reader in (alice, staff):
        response = client_for(reader).get(image_url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content) == image.file.open("rb").read()
        response = client_for(reader).get(init_url)
        assert response.status_code == 200 and b"".join(response.streaming_content) == init_data
        assert "private" in response["Cache-Control"]
    for stranger in (bob, None):
        assert client_for(stranger).get(image_url).status_code == 404
        assert client_for(stranger).get(init_url).status_code == 404
        assert client_for(stranger).get(f"/api/v1/jobs/{job.pk}/").status_code == 404

    # Nothing under MEDIA_ROOT is reachable by path, for anyone, whatever the spelling.
    for name in (image.file.name, job.init_image.name):
        assert (media / name).is_file()
        for reader in (alice, bob, staff, None):
            for path in (f"/media/{name}", f"/media//{name}", f"/media/./{name}", f"/{name}"):
                assert client_for(reader).get(path).status_code == 404, (reader, path)


def test_a_job_without_an_init_image_and_a_lost_file_answer_404() -> None:
    alice = User.objects.create_user("alice")
    job = make_job(alice, "a fox", count=1)
    api = client_for(alice)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["init_image"] is None
    assert api.get(f"/api/v1/jobs/{job.pk}/init-image/").status_code == 404
    image = job.images.get()
    image.file.storage.delete(image.file.name)
    assert api.get(f"/api/v1/images/{image.pk}/file/").status_code == 404


def test_dataset_images_are_read_through_the_api(sample_dataset) -> None:  # noqa: ANN001
    api = client_for(None)
    listing = api.get(f"/api/v1/datasets/{sample_dataset.pk}/images/").json()["results"]
    first = sample_dataset.images.order_by("id").first()
    url = listing[0]["url"]
    assert url == f"http://testserver/api/v1/datasets/{sample_dataset.pk}/images/{first.pk}/file/"
    response = api.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("image/")
    assert b"".join(response.streaming_content) == first.image.open("rb").read()
    assert api.get(f"/api/v1/datasets/{sample_dataset.pk + 1}/images/{first.pk}/file/").status_code == 404
    assert api.get(f"/media/{first.image.name}").status_code == 404


def test_behind_nginx_the_file_is_handed_over_with_x_accel_redirect(settings) -> None:  # noqa: ANN001
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    job, _ = img2img_job(alice)
    image: GeneratedImage = job.images.get()
    response = client_for(alice).get(f"/api/v1/images/{image.pk}/file/?download=1")
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected-media/{image.file.name}"
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="{job.pk}-0.png"'
    response = client_for(alice).get(f"/api/v1/jobs/{job.pk}/init-image/")
    assert response["X-Accel-Redirect"] == f"/protected-media/{job.init_image.name}"
    assert client_for(bob).get(f"/api/v1/images/{image.pk}/file/").status_code == 404
    assert "X-Accel-Redirect" not in client_for(bob).get(f"/api/v1/jobs/{job.pk}/init-image/")


def test_a_dataset_file_whose_name_says_html_is_a_download_never_a_page(sample_dataset) -> None:  # noqa: ANN001
    # Uploaders name dataset files; a GIF/HTML polyglot called x.html must not render in the service's origin.
    first = sample_dataset.images.order_by("id").first()
    first.image.save("polyglot.html", ContentFile(png_bytes((9, 9, 9))), save=True)
    response = client_for(None).get(f"/api/v1/datasets/{sample_dataset.pk}/images/{first.pk}/file/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
