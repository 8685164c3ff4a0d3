"""Shared fixtures: development checkpoints, registry rows, and real Celery worker processes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def dev_checkpoint_files() -> None:
    """The tiny development checkpoints and LoRAs on disk (built once; a no-op when present)."""
    from image_model_domain.management.commands.build_dev_models import dev_models_build_files

    dev_models_build_files("tiny")


@pytest.fixture
def dev_models(db: None, dev_checkpoint_files: None) -> None:
    """Registry rows for the development checkpoints, as `make run` registers them."""
    call_command("build_dev_models", verbosity=0, stdout=io.StringIO())


@pytest.fixture
def sample_dataset(db: None):  # noqa: ANN201
    from dataset_domain.models import Dataset

    call_command("loaddata", str(ROOT / "fixtures" / "datasets.json"), verbosity=0)
    return Dataset.objects.get(name="sample")


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process = process
        self.log = log

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool): what an OOM killer or a lost node does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def worker_env() -> dict[str, str]:
    database = settings.DATABASES["default"]
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": url,
        "PYTHONUNBUFFERED": "1",
    }


def worker_command(queues: list[str]) -> list[str]:
    """`celery worker` as the README runs it (one prefork process), under a hostname of its own."""
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
        "--queues", ",".join(queues), "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
        "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def start_worker(django_db_setup: None, django_db_blocker, tmp_path_factory) -> Iterator[Callable[..., WorkerProcess]]:  # noqa: ANN001
    """Start `celery worker` processes against the test database and Redis; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(queues: list[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> WorkerProcess:
        """env: variables of this worker alone (e.g. a DATABASE_URL through a proxy the test controls)."""
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        command = worker_command(queues)
        with log.open("w") as handle:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**worker_env(), **(env or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log)
        started.append(worker)
        deadline = time.monotonic() + timeout
        while " ready." not in worker.output():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{worker.output()[-4000:]}")
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def celery_worker(start_worker) -> WorkerProcess:  # noqa: ANN001
    """The suite's shared worker on the default and webhook queues."""
    return start_worker([settings.DIFFUSION_DEFAULT_QUEUE, settings.WEBHOOK_QUEUE])


def wait_for_job(job_id, statuses=("succeeded", "failed", "cancelled"), timeout: float = 180, worker=None):  # noqa: ANN001, ANN201
    from image_model_domain.models import GenerationJob

    deadline = time.monotonic() + timeout
    while True:
        job = GenerationJob.objects.get(pk=job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            log = worker.output()[-4000:] if worker else ""
            raise AssertionError(f"job {job_id} is {job.status} after {timeout}s, wanted {statuses}\n{log}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Throttle counters and cached reads live in Redis; each test starts without them.

    delete_pattern, not clear(): clear() would FLUSHDB and take the broker's queued messages with it.
    """
    from django.core.cache import cache

    def clear() -> None:
        if hasattr(cache, "delete_pattern"):
            cache.delete_pattern("*")
        else:
            cache.clear()

    clear()
    yield
    clear()


def session_queue(name: str) -> str:
    """A queue of this test session alone: two sessions on one Redis never take each other's messages."""
    return f"{name}-{os.environ['TEST_SESSION']}"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def queue_history_of_a_tenth_of_a_second_a_step() -> None:
    """A finished 100-step job that took 10 s, and a live worker on the default queue: what queue estimates need."""
    from datetime import timedelta

    from django.utils import timezone

    from image_model_domain.models import GenerationJob
    from image_model_domain.workers import worker_heartbeat

    now = timezone.now()
    GenerationJob.objects.create(
        kind="text_to_image",
        params={},
        seed=1,
        queue="q",
        images_expected=1,
        status="succeeded",
        progress_total=100,
        progress_step=100,
        started_at=now - timedelta(seconds=10),
        finished_at=now,
    )
    # Without a live worker the queue gives no estimate (tests/tasks/test_worker_presence.py runs real ones).
    worker_heartbeat(hostname="w1@host", queues=[settings.DIFFUSION_DEFAULT_QUEUE], pid=1, started_at=now)
