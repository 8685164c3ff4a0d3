"""(a) + (b): the bare services/ call against the same job end to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.common import (
    JOB_TIMEOUT_S,
    POLL_S,
    PROMPT,
    QUIET_FRACTION,
    SCHEDULER,
    SEED,
    SIZE,
    STEPS,
    log,
    median,
    text_request,
    timed,
)
from bench.environment import Worker

if TYPE_CHECKING:
    from PIL import Image

    from services.engine import DiffusersEngine
    from services.types import ModelSpec


@dataclass
class OverheadResult:
    bare_s: list[float] = field(default_factory=list)
    end_to_end_s: list[float] = field(default_factory=list)
    job_inference_s: list[float] = field(default_factory=list)
    parts_ms: dict[str, list[float]] = field(default_factory=dict)
    max_pixel_diff: int = -1
    progress_checks_ms: float = 0.0
    polled_throughout_s: list[float] = field(default_factory=list)
    http_s: list[float] = field(default_factory=list)  # (b) through the web command: POST, poll GET, PNG
    http_pixel_diff: int = -1
    late: int = 0  # (b) runs already final at their first poll: those overstate (b)

    @property
    def overhead_ms(self) -> float:
        return (median(self.end_to_end_s) - median(self.bare_s)) * 1000

    @property
    def outside_inference_ms(self) -> float:
        """(b) less the job's own inference_s: the path around the model run, free of its noise."""
        pairs = zip(self.end_to_end_s, self.job_inference_s, strict=True)
        return median([(e2e - inference) * 1000 for e2e, inference in pairs])

    @property
    def ratio(self) -> float:
        return median(self.end_to_end_s) / median(self.bare_s)


def job_end_to_end(worker: Worker, model_name: str, *, quiet_s: float = 0.0) -> tuple[float, Any, bool]:
    """Submit one job as the API does; seconds from submit until the row reads SUCCEEDED, the row, and
    whether it was already final at the first poll (then the seconds overstate the job).

    The poller sleeps `quiet_s` first: on 2 cores a 5 ms poller (and the PostgreSQL backend it wakes)
    slows the worker's model run measurably, which is the bench disturbing what it measures.
    """
    from image_model_domain.jobs import job_create_generation
    from image_model_domain.models import GenerationJob, JobStatus

    final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    started = time.perf_counter()
    job = job_create_generation(
        owner=None, prompt=PROMPT, model_name=model_name, steps=STEPS, width=SIZE, height=SIZE,
        scheduler=SCHEDULER, seed=SEED,
    )  # fmt: skip
    time.sleep(quiet_s)
    late = job_status(job.pk) in final
    while job_status(job.pk) not in final:
        if not worker.alive() or time.perf_counter() - started > JOB_TIMEOUT_S:
            raise RuntimeError(f"job {job.pk} did not finish; worker log:\n{worker.output()[-4000:]}")
        time.sleep(POLL_S)
    seconds = time.perf_counter() - started
    row = GenerationJob.objects.get(pk=job.pk)
    if row.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job.pk} ended {row.status}: {row.error}")
    return seconds, row, late and quiet_s > 0


def job_over_http(port: int, worker: Worker, model_name: str, *, quiet_s: float = 0.0) -> tuple[float, bytes]:
    """The same job as a client of the web command sees it: POST /api/v1/generations/, GET the job
    every POLL_S after `quiet_s` until it is final, then GET its PNG. Seconds until the PNG is in hand."""
    import http.client
    import json

    body = json.dumps(
        {"prompt": PROMPT, "model": model_name, "steps": STEPS, "width": SIZE, "height": SIZE,
         "scheduler": SCHEDULER, "seed": SEED}
    ).encode()  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(method: str, path: str, payload: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    try:
        started = time.perf_counter()
        status, answer = call("POST", "/api/v1/generations/", body)
        if status != 202:
            raise RuntimeError(f"submit answered {status}: {answer[:500]!r}")
        job_url = f"/api/v1/jobs/{json.loads(answer)['id']}/"
        time.sleep(quiet_s)
        while True:
            status, answer = call("GET", job_url)
            job = json.loads(answer)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            if not worker.alive() or time.perf_counter() - started > JOB_TIMEOUT_S:
                raise RuntimeError(f"{job_url} did not finish; worker log:\n{worker.output()[-4000:]}")
            time.sleep(POLL_S)
        if job["status"] != "succeeded":
            raise RuntimeError(f"{job_url} ended {job['status']}: {job.get('error')}")
        status, png = call("GET", job["images"][0]["url"].split(f":{port}", 1)[-1])
        if status != 200 or not png.startswith(b"\x89PNG"):
            raise RuntimeError(f"the image download answered {status}")
        return time.perf_counter() - started, png
    finally:
        connection.close()


def job_status(job_id: Any) -> str:
    """One primary-key read in plain SQL: the poller runs every few ms on the worker's cores, so keep it light."""
    from django.db import connection

    from image_model_domain.models import GenerationJob

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status FROM {GenerationJob._meta.db_table} WHERE id = %s", [job_id])
        return cursor.fetchone()[0]


def progress_checks_ms(job_id: Any, repeats: int) -> float:
    """What a job's progress I/O costs (a sync at the start, then one per step), timed on its own: in a worker,
    its pump thread does this work while the model runs (tasks/progress.py)."""
    from image_model_domain.lifecycle import ProgressReporter

    samples = []
    for _ in range(repeats):
        reporter = ProgressReporter(str(job_id), STEPS)
        started = time.perf_counter()
        for increment in [0] + [1] * STEPS:
            reporter.step(increment)
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


def job_parts_ms(row: Any, seconds: float) -> dict[str, float]:
    """Where the end-to-end time went, from the row's own timestamps (one machine, one clock)."""
    run_s = (row.finished_at - row.started_at).total_seconds()
    return {
        "submit -> started (insert, publish, Redis, claim)": (row.started_at - row.queued_at).total_seconds() * 1000,
        "in task, outside inference (queries, progress, save)": (run_s - row.inference_s) * 1000,
        "of which save_s (PNG + file + row)": row.save_s * 1000,
        "finished -> seen by the poller, plus submit -> queued_at": (seconds - run_s) * 1000
        - (row.started_at - row.queued_at).total_seconds() * 1000,
    }


def pixel_diff(image: Image.Image, path: Any) -> int:
    """Largest per-channel difference between `image` and a PNG (a path or an open image)."""
    import numpy as np
    from PIL import Image as PILImage

    with path if isinstance(path, PILImage.Image) else PILImage.open(path) as saved:
        theirs = np.asarray(saved.convert("RGB"), dtype=np.int16)
    return int(np.abs(np.asarray(image, dtype=np.int16) - theirs).max())


def run_overhead(engine: DiffusersEngine, worker: Worker, spec: ModelSpec, repeats: int, port: int) -> OverheadResult:
    """Warm every side (model loads, first-call costs), then run (a), (b), (b) polled from the start and
    (b) through HTTP on `port` in rotating order, so that drifting machine load weighs on all alike."""
    import io

    from PIL import Image as PILImage

    result = OverheadResult()
    outputs: list = []
    warm_s = timed(engine, text_request(spec), outputs)
    _, row, _ = job_end_to_end(worker, spec.name)
    result.max_pixel_diff = pixel_diff(outputs[0].image, row.images.get().file.path)
    result.progress_checks_ms = progress_checks_ms(row.pk, repeats)
    _, png = job_over_http(port, worker, spec.name)
    result.http_pixel_diff = pixel_diff(outputs[0].image, PILImage.open(io.BytesIO(png)))

    def bare() -> None:
        result.bare_s.append(timed(engine, text_request(spec)))

    def job() -> None:
        quiet_s = QUIET_FRACTION * min(result.bare_s or [warm_s])
        record_job(result, *job_end_to_end(worker, spec.name, quiet_s=quiet_s))

    def job_polled_throughout() -> None:
        result.polled_throughout_s.append(job_end_to_end(worker, spec.name)[0])

    def job_http() -> None:
        result.http_s.append(job_over_http(port, worker, spec.name, quiet_s=QUIET_FRACTION * min(result.bare_s))[0])

    steps: list[Callable[[], None]] = [bare, job, job_polled_throughout, job_http]
    for index in range(repeats):
        for step in steps[index % len(steps) :] + steps[: index % len(steps)]:
            step()
        log(f"(a)/(b) round {index + 1}/{repeats}: {result.bare_s[-1]:.3f} s / {result.end_to_end_s[-1]:.3f} s")
    return result


def record_job(result: OverheadResult, seconds: float, row: Any, late: bool) -> None:
    result.late += late
    result.end_to_end_s.append(seconds)
    result.job_inference_s.append(row.inference_s)
    for name, value in job_parts_ms(row, seconds).items():
        result.parts_ms.setdefault(name, []).append(value)
