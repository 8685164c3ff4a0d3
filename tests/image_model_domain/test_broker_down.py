"""With the broker down, creates answer 503 and leave no half-made job; /readyz names the broker."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from config.celery_app import app
from image_model_domain.models import DLModel, GenerationJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dead_broker(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(app, "_pool", None)
    yield
    app._pool = None


def test_a_create_answers_503_and_keeps_nothing(dead_broker: None) -> None:
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    response = APIClient().post("/api/v1/generations/", {"prompt": "a fox"}, format="json")
    assert response.status_code == 503, response.content
    assert "queue" in response.json()["detail"].lower()
    assert not GenerationJob.objects.exists()


def test_readyz_names_the_failing_broker(dead_broker: None) -> None:
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"
