"""Deeply nested JSON (bodies, and JSON strings inside forms) answers 400 JSON, never a 500."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from common.api.parsers import MAX_JSON_DEPTH
from image_model_domain.models import DLModel, GenerationJob

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def api() -> APIClient:
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    return APIClient()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/generations/",
        "/api/v1/random-diffusions/",
        "/api/image_model_domain/v1/random_diffusion/{dataset}/initialize_diffusion/",
    ],
)
def test_a_body_nested_100000_deep_is_a_400(api: APIClient, sample_dataset, path: str) -> None:  # noqa: ANN001
    path = path.format(dataset=sample_dataset.pk)
    response = api.post(path, DEEP, content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    assert "nested more than" in response.json()["detail"]
    assert not GenerationJob.objects.exists()


def test_a_value_one_level_past_the_limit_is_refused_and_the_limit_itself_is_not(api: APIClient) -> None:
    def nested(depth: int) -> str:
        return '{"prompt": "a fox", "extra": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"

    # Parsed, and then refused for the unknown field it names: the limit itself is not "too deep".
    response = api.post("/api/v1/generations/", nested(MAX_JSON_DEPTH), content_type="application/json")
    assert response.status_code == 400 and "extra" in response.json()["errors"]
    response = api.post("/api/v1/generations/", nested(MAX_JSON_DEPTH + 1), content_type="application/json")
    assert response.status_code == 400 and "nested more than" in response.json()["detail"]


def test_a_malformed_body_and_nan_are_400(api: APIClient) -> None:
    for body in ('{"prompt": ', '{"prompt": "a", "guidance_scale": NaN}'):
        response = api.post("/api/v1/generations/", body, content_type="application/json")
        assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_a_deep_json_string_in_a_form_field_names_the_field(api: APIClient) -> None:
    response = api.post("/api/v1/generations/", {"prompt": "a fox", "loras": DEEP}, format="multipart")
    assert response.status_code == 400 and "loras" in response.json()["errors"]
    staff = User.objects.create_user("root", password="pw", is_staff=True)
    api.force_authenticate(staff)
    response = api.post("/api/v1/models/", DEEP, content_type="application/json")
    assert response.status_code == 400 and "nested more than" in response.json()["detail"]
    response = api.patch("/api/v1/models/tiny-sd-a/", {"metadata": DEEP}, format="multipart")
    assert response.status_code == 415  # registry writes are JSON only
    response = api.patch("/api/v1/models/tiny-sd-a/", {"metadata": {"a": [[1, 2], {"b": None}]}}, format="json")
    assert response.status_code == 200 and response.json()["metadata"] == {"a": [[1, 2], {"b": None}]}
