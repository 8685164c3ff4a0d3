"""With the broker down, creates answer 503 and leave no half-made job; /readyz names the broker."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from config.celery_app import app
from image_model_domain.events import events_key
from image_model_domain.models import DLModel, GenerationJob

pytestmark = pytest.mark.django_db(transaction=True)


def reset_broker_pools() -> None:
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def dead_broker():  # noqa: ANN201
    real = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    reset_broker_pools()
    yield
    app.conf.broker_url = real
    reset_broker_pools()


def test_a_create_answers_503_and_keeps_nothing(dead_broker: None) -> None:
    events = redis.Redis.from_url(settings.REDIS_URL)
    streams_before = set(events.scan_iter(events_key("*")))
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    response = APIClient().post("/api/v1/generations/", {"prompt": "a fox"}, format="json")
    assert response.status_code == 503, response.content
    assert "queue" in response.json()["detail"].lower()
    assert not GenerationJob.objects.exists()
    # Its "queued" event went out before the send failed; the stream went with the job.
    assert set(events.scan_iter(events_key("*"))) <= streams_before


def test_readyz_names_the_failing_broker(dead_broker: None) -> None:
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"
