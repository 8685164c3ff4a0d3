"""--gpu, the service end to end: jobs through the web command and a worker, s/image against the bare pipeline.

The GPU machines have neither PostgreSQL nor Redis, so this part runs the embedded default (SQLite and
Celery's filesystem broker, under var/bench-gpu/), as `make run` does, with the production web command
(gunicorn) in front. For each batch size, JOBS jobs of that many images are submitted at once, so the
worker always has the next job waiting (a backlog, as a busy service has: the broker's polling is not
on the clock), and the clock runs from the first POST to the last PNG downloaded: s/image = that time /
images. Cross-job batching is off here, so a job of `batch` images is one pipeline call of `batch`, as in
the bare timing it is compared with (bench/gpu.py gpu_timings, the same engine settings, in this process
before the worker starts: one GPU, one of them at a time).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.common import PROMPT, ROOT, SCHEDULER, SEED, log, median
from bench.environment import Worker

if TYPE_CHECKING:
    from collections.abc import Iterator

JOBS = 8
QUEUE = "bench-gpu"
HOME = ROOT / "var" / "bench-gpu"
JOB_TIMEOUT_S = 900.0  # the first job waits for the worker's preload (and compile warm-up, on a cold cache)


@dataclass(frozen=True)
class ServiceShape:
    """What the worker runs: the model registered for it and the engine settings (the bare pipeline's)."""

    model: str
    source: str
    size: int
    steps: int
    device: str
    dtype: str
    compile: bool


def service_environment(shape: ServiceShape, max_batch: int) -> dict[str, str]:
    """The embedded default under var/bench-gpu/ for this process, the worker and the web command."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        # The database, the broker's folders and media under var/bench-gpu/; the checkpoints and the compile
        # cache where the bare timings left them (a warm cache: the worker does not compile from scratch).
        "VAR_DIR": str(HOME),
        "DATABASE_URL": f"sqlite:///{HOME / 'db.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "filesystem://",
        "BROKER_FILESYSTEM_POLL_S": "0.01",  # Redis hands a waiting worker its message at once; the folder is polled
        "MEDIA_ROOT": str(HOME / "media"),
        "MODEL_ROOT": str(ROOT / "var" / "models"),
        "DIFFUSION_COMPILE_CACHE_DIR": str(ROOT / "var" / "inductor-cache"),
        "DIFFUSION_DEFAULT_QUEUE": QUEUE,
        "DIFFUSION_MODEL_QUEUES": "",
        "DIFFUSION_DEVICE": shape.device,
        "DIFFUSION_DTYPE": shape.dtype,
        "DIFFUSION_PRELOAD": "true",
        "DIFFUSION_CHANNELS_LAST": "true",
        "DIFFUSION_FUSE_QKV": "true",
        "DIFFUSION_COMPILE": "true" if shape.compile else "false",
        "DIFFUSION_BATCH_SIZE": str(max_batch),
        "DIFFUSION_CROSS_JOB_BATCHING": "false",
        "API_ALLOW_ANONYMOUS": "true",
        "API_SUBMISSION_RATE": "1000000/minute",
        "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP": "1000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def service_prepare(shape: ServiceShape) -> None:
    """A fresh database with the one model registered (preloaded by the worker), and empty media."""
    from django.core.management import call_command

    from image_model_domain.models import DLModel

    shutil.rmtree(HOME / "media", ignore_errors=True)
    call_command("migrate", verbosity=0, interactive=False)
    DLModel.objects.all().delete()
    DLModel.objects.create(
        name=shape.model, source=shape.source, dtype=shape.dtype, resolution=shape.size, preload=True,
        default_scheduler=SCHEDULER,
    )  # fmt: skip


class Client:
    """One keep-alive connection to the web command."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, bytes]:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if body else {}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


def backlog(client: Client, worker: Worker, shape: ServiceShape, *, batch: int, jobs: int) -> tuple[float, int]:
    """Submit `jobs` jobs of `batch` images at once; seconds until every PNG is downloaded, and the images."""
    started = time.perf_counter()
    urls = []
    for number in range(jobs):
        status, answer = client.call(
            "POST", "/api/v1/generations/",
            {"prompt": PROMPT, "model": shape.model, "steps": shape.steps, "width": shape.size,
             "height": shape.size, "scheduler": SCHEDULER, "seed": SEED + number, "num_images": batch},
        )  # fmt: skip
        if status != 202:
            raise RuntimeError(f"submit answered {status}: {answer[:500]!r}")
        urls.append(f"/api/v1/jobs/{json.loads(answer)['id']}/")
    images = 0
    for url in urls:  # in submit order: the order the worker runs them
        while True:
            _, answer = client.call("GET", url)
            job = json.loads(answer)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            if not worker.alive() or time.perf_counter() - started > JOB_TIMEOUT_S:
                raise RuntimeError(f"{url} did not finish; worker log:\n{worker.output()[-4000:]}")
            time.sleep(0.02)
        if job["status"] != "succeeded":
            raise RuntimeError(f"{url} ended {job['status']}: {job.get('error')}")
        for image in job["images"]:
            status, png = client.call("GET", image["url"].split(f":{client.port}", 1)[-1])
            if status != 200 or not png.startswith(b"\x89PNG"):
                raise RuntimeError(f"the image download answered {status}")
            images += 1
    return time.perf_counter() - started, images


@contextmanager
def service(shape: ServiceShape, env: dict[str, str]) -> Iterator[tuple[Client, Worker]]:
    """The worker and the web command on the embedded default, the worker's preload done (a first job ran)."""
    from bench.web import web_server

    worker = Worker({**os.environ, **env, "LOG_LEVEL": "INFO"}, QUEUE, HOME / "worker.log", "gpu")
    worker.start()
    try:
        with web_server(env, "gthread", queue=QUEUE) as port:
            client = Client(port)
            try:
                log("service: the worker preloads (and compiles) the model; a first job waits for it")
                backlog(client, worker, shape, batch=1, jobs=1)
                yield client, worker
            finally:
                client.close()
    finally:
        worker.stop()


def service_timings(
    shape: ServiceShape, env: dict[str, str], batches: tuple[int, ...], repeats: int
) -> dict[int, float]:
    """Median s/image end to end for each batch size (`repeats` backlogs of JOBS jobs each)."""
    results: dict[int, float] = {}
    with service(shape, env) as (client, worker):
        for batch in batches:
            per_image = []
            for _ in range(repeats):
                seconds, images = backlog(client, worker, shape, batch=batch, jobs=JOBS)
                per_image.append(seconds / images)
            results[batch] = median(per_image)
            log(f"service end to end, batch {batch}: {results[batch]:.4f} s/image")
    return results


def service_lines(bare_s_per_image: dict[int, float], service_s_per_image: dict[int, float], label: str) -> list[str]:
    """The report's rows: the service against the bare pipeline with the same settings, per batch size."""
    lines = [
        f"The service end to end ({JOBS} jobs a backlog, submitted at once; POST to the last PNG downloaded, through",
        "the production web command and a worker on the embedded default, bench/gpu_service.py) against the bare",
        f"pipeline with the same settings ({label}):",
        "",
        "| batch (images a job) | bare s/image | service s/image | service / bare | target |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for batch, service_s in service_s_per_image.items():
        bare = bare_s_per_image[batch]
        ratio = service_s / bare
        verdict = "within 3%: " + ("**pass**" if ratio <= 1.03 else "**FAIL**")
        lines.append(f"| {batch} | {bare:.4f} | {service_s:.4f} | {ratio:.3f} | {verdict} |")
    lines.append("")
    return lines
