"""A worker whose PostgreSQL goes away briefly keeps the message in hand and runs the queue in order once it is back.

The worker reaches PostgreSQL through a TCP proxy the test cuts and restores (tests/tcpproxy.py); the test
process and other sessions use the server directly, untouched.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from image_model_domain.jobs import job_create_generation
from image_model_domain.models import GenerationJob
from tests.conftest import session_queue, wait_for_job
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

# Longer than the old three quick retries (about 7 s at most), after which the message was dropped.
OUTAGE_S = 8


@pytest.fixture
def proxy():  # noqa: ANN201
    database = settings.DATABASES["default"]
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    yield proxy
    proxy.close()


def test_a_message_taken_during_an_outage_waits_for_the_database_and_keeps_its_place(
    start_worker, dev_models, proxy, settings
) -> None:  # noqa: ANN001
    database = settings.DATABASES["default"]
    queue = session_queue("db-outage")
    url = f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}"
    # One job a claim: cross-job batching would run the second in the first's batch, and this is about order.
    env = {"DATABASE_URL": url, "DB_OUTAGE_WAIT_S": "60", "DIFFUSION_CROSS_JOB_BATCHING": "false"}
    worker = start_worker([queue], env=env)
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": queue}

    proxy.cut()
    first = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="first", steps=4, seed=1)
    second = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="second", steps=4, seed=2)
    deadline = time.monotonic() + 30
    while "Task tasks.generation.run_job[" not in worker.output():  # Celery's line: the worker took the first
        assert time.monotonic() < deadline, worker.output()[-4000:]
        time.sleep(0.1)
    time.sleep(OUTAGE_S)
    assert set(GenerationJob.objects.values_list("status", flat=True)) == {"queued"}
    assert "database unavailable (claiming the job)" in worker.output()
    proxy.restore()

    first, second = (wait_for_job(job.pk, timeout=60, worker=worker) for job in (first, second))
    assert first.status == "succeeded" and second.status == "succeeded", (first.error, second.error)
    assert first.attempts == 1 and second.attempts == 1  # each claimed once, no reconciler needed
    assert first.started_at < second.started_at  # the queue's order survived the outage
    assert first.images.count() == 1 and second.images.count() == 1
