"""The API docs: every request example in the schema runs against `make run`'s registry, and the doc pages are
served at both spellings of their URL with a Content-Security-Policy that keeps them to this server."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from image_model_domain.models import GenerationJob

pytestmark = pytest.mark.django_db

# Path parameters for the examples: rows that `make run` registers (build_dev_models, the sample dataset).
PATH_VALUES = {
    "/api/v1/models/{name}/": {"name": "tiny-sd-b"},
    "/api/v1/loras/{name}/": {"name": "tiny-lora-glow"},
}


def test_every_documented_request_example_is_accepted(dev_models: None, sample_dataset) -> None:  # noqa: ANN001
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("docs-reader", is_staff=True))
    schema = staff.get("/api/schema/?format=json").json()
    tried = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
                for name, example in content.get("examples", {}).items():
                    values = {"dataset_id": sample_dataset.pk, **PATH_VALUES.get(path, {})}
                    url = re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)  # noqa: B023
                    body = example["value"]
                    if "dataset" in body:  # 1 after `make run`'s loaddata; this database's sequence runs on
                        body = {**body, "dataset": sample_dataset.pk}
                    assert media_type == "application/json", (path, name)
                    response = getattr(staff, method)(url, body, format="json")
                    assert 200 <= response.status_code < 300, (method, path, name, response.json())
                    tried.append((method, path))
    assert ("post", "/api/v1/generations/") in tried and ("post", "/api/v1/random-diffusions/") in tried
    assert len(tried) >= 8, tried
    job = GenerationJob.objects.get(kind="text_to_image")
    assert job.model.name == "tiny-sd-a" and [lora["name"] for lora in job.params["loras"]] == [
        "tiny-lora-ink",
        "tiny-lora-glow",
    ]


@pytest.mark.parametrize("path", ["/docs", "/docs/", "/redoc", "/redoc/"])
def test_the_doc_pages_answer_at_both_spellings_and_keep_to_this_server(client, path: str) -> None:  # noqa: ANN001
    response = client.get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    page = response.content.decode()
    assert "googleapis" not in page and "https://" not in page.replace("https://redocly.com", "")
    assert "<script>" not in page  # no inline script: script-src 'self' allows none
