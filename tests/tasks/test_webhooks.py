"""Webhooks: delivered by a worker to a local receiver, signed, retried on errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.conf import settings as django_settings

from image_model_domain.jobs import job_create_generation
from tests.conftest import wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.deliveries.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            assert time.monotonic() < deadline, "no webhook arrived"
            time.sleep(0.05)


def test_a_signed_webhook_is_delivered_after_a_failed_attempt(celery_worker, dev_models, settings) -> None:  # noqa: ANN001
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver(fail_first=1)
    try:
        job = job_create_generation(
            owner=None, model_name="tiny-sd-a", prompt="a fox", steps=2, webhook_url=receiver.url
        )
        job = wait_for_job(job.pk, worker=celery_worker)
        receiver.wait()
    finally:
        receiver.server.shutdown()
    headers, body = receiver.deliveries[0]
    expected = "sha256=" + hmac.new(django_settings.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Diffusion-Signature"], expected)
    payload = json.loads(body)
    assert payload["id"] == str(job.pk) and payload["status"] == "succeeded"
    assert payload["images"] == [str(image.pk) for image in job.images.order_by("index")]
