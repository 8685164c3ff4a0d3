"""Redis down (cache and broker): reads fall back to the database, submits answer 503 and keep nothing.

The test runs its own redis-server on a free port and SIGKILLs it, so the suite's Redis is untouched.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from config.celery_app import app
from image_model_domain.models import DLModel, GenerationJob, JobStatus
from tests.conftest import free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def reset_broker_pools() -> None:
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def own_redis(settings, tmp_path: Path) -> Iterator[RedisServer]:  # noqa: ANN001
    """Cache and broker on a redis-server of this test's own; the suite's settings come back after."""
    server = RedisServer(tmp_path)
    server.start()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CACHES = {
        "default": {
            "BACKEND": "config.cache.ResilientRedisCache",
            "LOCATION": server.url,
            "KEY_PREFIX": "redis-down",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5, "RETRY_AFTER_S": 1.0},
        }
    }
    real_broker = app.conf.broker_url
    app.conf.broker_url = server.url
    reset_broker_pools()
    yield server
    server.kill()
    app.conf.broker_url = real_broker
    reset_broker_pools()


def png() -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 120, 200)).save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "start.png"
    return buffer


def timed(call):  # noqa: ANN001, ANN201
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_with_redis_killed_reads_work_and_submits_answer_503_keeping_nothing(own_redis: RedisServer) -> None:
    model = DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    now = timezone.now()
    finished = GenerationJob.objects.create(
        kind="text_to_image", status=JobStatus.SUCCEEDED, params={"model": "tiny-sd-a", "prompt": "a fox"},
        seed=1, model=model, queue="q", images_expected=0, started_at=now, finished_at=now,
    )  # fmt: skip
    api = APIClient()
    # Redis up: the reads are cached, a submit is queued.
    assert api.get(f"/api/v1/jobs/{finished.pk}/").status_code == 200
    assert api.get("/api/v1/models/").status_code == 200
    assert api.post("/api/v1/generations/", {"prompt": "a fox"}, format="json").status_code == 202
    assert GenerationJob.objects.count() == 2

    own_redis.kill()

    response, first_s = timed(lambda: api.get(f"/api/v1/jobs/{finished.pk}/"))
    assert response.status_code == 200, response.content[:300]
    assert response.json()["id"] == str(finished.pk) and response.json()["status"] == "succeeded"
    response, second_s = timed(lambda: api.get("/api/v1/models/"))
    assert response.status_code == 200 and [m["name"] for m in response.json()["results"]] == ["tiny-sd-a"]
    assert first_s < 3 and second_s < 0.5  # the breaker is open: no wait on the dead Redis

    response, submit_s = timed(lambda: api.post("/api/v1/generations/", {"prompt": "a fox"}, format="json"))
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"] == "application/json" and response["Retry-After"]
    assert "broker" in response.json()["detail"] and "nothing was kept" in response.json()["detail"]
    assert submit_s < 10
    response = api.post(
        "/api/v1/generations/", {"prompt": "a fox", "init_image": png(), "strength": 0.5}, format="multipart"
    )
    assert response.status_code == 503, response.content[:300]
    assert GenerationJob.objects.count() == 2  # no half-made job
    init_images = Path(own_redis.workdir / "media" / "init-images")
    assert not init_images.exists() or not any(init_images.iterdir())  # and no stored init image

    # Redis back on the same port: the cache and the queue are used again.
    own_redis.start()
    time.sleep(1.1)  # RETRY_AFTER_S
    response = api.post("/api/v1/generations/", {"prompt": "a fox"}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert api.get(f"/api/v1/jobs/{finished.pk}/").status_code == 200
    assert redis.Redis(port=own_redis.port).keys("redis-down:*")  # written to the cache again
