"""The bench's environment: variables, database, Redis, and the Celery worker process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import DATABASE_URL, MEDIA_ROOT, QUEUE, REDIS_URL, ROOT, WORKER_LOG

# --------------------------------------------------------------------------------------------------
# Environment: one set of variables for this process and the worker, set before Django or torch load.


def bench_environment(*, threads: int, device: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",  # DEBUG keeps every SQL query in memory: not what a deployment runs
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": "diffusion-bench",
        "DIFFUSION_DEFAULT_QUEUE": QUEUE,
        "DIFFUSION_MODEL_QUEUES": "",
        "WEBHOOK_QUEUE": f"{QUEUE}-webhooks",
        "DIFFUSION_PRELOAD": "false",
        "DIFFUSION_DEVICE": device,
        "MEDIA_ROOT": str(MEDIA_ROOT),
        # torch reads these when it is first imported: the same intra-op thread count in both processes.
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }


def database_ensure(url: str) -> bool:
    """Create the bench database if it does not exist; True when created."""
    import dj_database_url
    import psycopg2
    from psycopg2 import sql

    config = dj_database_url.parse(url)
    connection = psycopg2.connect(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], password=config["PASSWORD"] or None,
        dbname="postgres",
    )  # fmt: skip
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]])
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            return True
    finally:
        connection.close()


def django_prepare() -> None:
    """Migrate the bench database, register the small checkpoints, drop what earlier runs left."""
    import io

    import django
    import redis
    from django.core.management import call_command

    django.setup()
    from image_model_domain.models import GenerationJob

    call_command("migrate", verbosity=0, interactive=False)
    call_command("build_dev_models", shape=["small"], stdout=io.StringIO())
    GenerationJob.objects.filter(queue=QUEUE).delete()
    shutil.rmtree(MEDIA_ROOT, ignore_errors=True)
    MEDIA_ROOT.mkdir(parents=True)
    redis.Redis.from_url(REDIS_URL).flushdb()  # the bench's own Redis database: no stale messages
    database_vacuum()


def database_vacuum() -> None:
    """VACUUM ANALYZE the bench database, so a part starts without the dead rows of what ran before.

    PostgreSQL's autovacuum does this where it runs (the server default). Where it is off, as on the
    development machines, every job a phase deleted stays in the job table's indexes and the next phase's
    queries read it: 24 000 dead rows after a few runs of part (e) made the cap's count 5 ms instead of 1.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


# --------------------------------------------------------------------------------------------------
# The worker process


class Worker:
    """`celery worker --pool prefork --concurrency 1` in its own process group, stopped on exit."""

    def __init__(self, env: dict[str, str], queue: str, log_path: Path, name: str = "bench") -> None:
        self.env = env
        self.queue = queue
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
            "--queues", self.queue, "--hostname", f"{self.name}-{os.getpid()}@%h", "--without-mingle",
            "--without-gossip", "--loglevel", "INFO",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as handle:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.output():
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the bench worker did not start:\n{self.output()[-4000:]}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@contextmanager
def running_worker(env: dict[str, str]) -> Iterator[Worker]:
    worker = Worker({**os.environ, **env, "LOG_LEVEL": "INFO"}, QUEUE, WORKER_LOG)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


def quiet_libraries() -> None:
    """Loading bars and LoRA notices of diffusers, transformers and peft would bury the bench's own lines."""
    import warnings

    import transformers
    from diffusers.utils import logging as diffusers_logging

    for library in (diffusers_logging, transformers.logging):
        library.disable_progress_bar()
        library.set_verbosity_error()
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")


def worker_torch_threads(env: dict[str, str]) -> int:
    """What torch.get_num_threads() says in a process started with the worker's environment."""
    probe = "import torch; print(torch.get_num_threads())"
    result = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1])
