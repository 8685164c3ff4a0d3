"""Benchmarks on the "small" development checkpoints; writes docs/benchmarks.md.

    python -m bench.run                    # CPU, ~2-4 minutes; the last line holds the headline numbers
    python -m bench.run --repeats 8 --threads 2
    python -m bench.run --gpu              # SD-1.5 shape on CUDA; writes docs/benchmarks-gpu.md

(a) the bare services/ call, (b) the same job through PostgreSQL, Redis and a Celery worker process,
(c) a mixed workload over three checkpoints and two LoRAs (counting reloads after warm-up), and
(d) random diffusion (img2img) batched against one by one. The bench has its own database, Redis
database, queue and media folder (overridable with BENCH_DATABASE_URL and BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from services.engine import DiffusersProcessor
    from services.types import GenerationRequest, LoraSpec, ModelSpec

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/diffusion_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = "bench-diffusion"
MEDIA_ROOT = ROOT / "var" / "bench-media"
WORKER_LOG = ROOT / "var" / "bench-worker.log"
DOCS = ROOT / "docs"

MODELS = ("small-sd-a", "small-sd-b", "small-sd-c")
LORAS = ("small-lora-ink", "small-lora-glow")
LORA_COMBOS: tuple[tuple[str, ...], ...] = ((), (LORAS[0],), (LORAS[1],), LORAS)
PROMPT = "a photo of a red cat riding a horse in the city"
PROMPTS = (PROMPT, "a painting of a blue mountain landscape", "portrait of an astronaut", "the city with a dog")
SEED = 1234
SIZE = 128
STEPS = 20
SCHEDULER = "euler"
STRENGTH = 0.75
RANDOM_IMAGES = 16
RANDOM_BATCH = 4
POLL_S = 0.005
QUIET_FRACTION = 0.7  # of the fastest bare run: how long (b)'s poller sleeps before polling every POLL_S
JOB_TIMEOUT_S = 300.0
TARGET_OVERHEAD_FRACTION = 0.05
TARGET_OVERHEAD_MS = 50.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


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


# --------------------------------------------------------------------------------------------------
# The worker process


class Worker:
    """`celery worker --pool prefork --concurrency 1` in its own process group, stopped on exit."""

    def __init__(self, env: dict[str, str], queue: str, log_path: Path) -> None:
        self.env = env
        self.queue = queue
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
            "--queues", self.queue, "--hostname", f"bench-{os.getpid()}@%h", "--without-mingle", "--without-gossip",
            "--loglevel", "INFO",
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


# --------------------------------------------------------------------------------------------------
# Requests


def model_specs() -> dict[str, ModelSpec]:
    from image_model_domain.models import DLModel
    from tasks.specs import model_spec

    return {model.name: model_spec(model) for model in DLModel.objects.filter(name__in=MODELS)}


def lora_specs() -> dict[str, LoraSpec]:
    from tasks.specs import lora_specs as specs_for

    return {spec.name: spec for spec in specs_for([{"name": name, "scale": 1.0} for name in LORAS])}


def text_request(spec: ModelSpec, loras: tuple[LoraSpec, ...] = (), *, seed: int = SEED) -> GenerationRequest:
    """One 128x128 text-to-image image: exactly what job_create_generation's job runs in the worker."""
    from services.types import GenerationRequest, ImageTask

    item = ImageTask(prompt=PROMPT, seed=seed, width=SIZE, height=SIZE, meta={"index": 0})
    return GenerationRequest(model=spec, items=[item], steps=STEPS, scheduler=SCHEDULER, loras=loras)


def timed(processor: DiffusersProcessor, request: GenerationRequest, outputs: list | None = None) -> float:
    on_batch = outputs.extend if outputs is not None else None
    started = time.perf_counter()
    processor.generate(request, on_batch=on_batch)
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------------
# (a) + (b): the bare call against the same job end to end


@dataclass
class OverheadResult:
    bare_s: list[float] = field(default_factory=list)
    end_to_end_s: list[float] = field(default_factory=list)
    job_inference_s: list[float] = field(default_factory=list)
    parts_ms: dict[str, list[float]] = field(default_factory=dict)
    max_pixel_diff: int = -1
    progress_checks_ms: float = 0.0
    polled_throughout_s: list[float] = field(default_factory=list)
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


def job_status(job_id: Any) -> str:
    """One primary-key read in plain SQL: the poller runs every few ms on the worker's cores, so keep it light."""
    from django.db import connection

    from image_model_domain.models import GenerationJob

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status FROM {GenerationJob._meta.db_table} WHERE id = %s", [job_id])
        return cursor.fetchone()[0]


def progress_checks_ms(job_id: Any, repeats: int) -> float:
    """What the worker's per-step callback costs one job (on_step(0), then once per step), timed on its own."""
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


def pixel_diff(image: Image.Image, path: str) -> int:
    import numpy as np
    from PIL import Image as PILImage

    with PILImage.open(path) as saved:
        theirs = np.asarray(saved.convert("RGB"), dtype=np.int16)
    return int(np.abs(np.asarray(image, dtype=np.int16) - theirs).max())


def run_overhead(processor: DiffusersProcessor, worker: Worker, spec: ModelSpec, repeats: int) -> OverheadResult:
    """Warm both sides (model loads, first-call costs), then run (a), (b) and (b) polled from the start
    in rotating order, so that drifting machine load weighs on all three alike."""
    result = OverheadResult()
    outputs: list = []
    warm_s = timed(processor, text_request(spec), outputs)
    _, row, _ = job_end_to_end(worker, spec.name)
    result.max_pixel_diff = pixel_diff(outputs[0].image, row.images.get().file.path)
    result.progress_checks_ms = progress_checks_ms(row.pk, repeats)

    def bare() -> None:
        result.bare_s.append(timed(processor, text_request(spec)))

    def job() -> None:
        quiet_s = QUIET_FRACTION * min(result.bare_s or [warm_s])
        record_job(result, *job_end_to_end(worker, spec.name, quiet_s=quiet_s))

    def job_polled_throughout() -> None:
        result.polled_throughout_s.append(job_end_to_end(worker, spec.name)[0])

    steps: list[Callable[[], None]] = [bare, job, job_polled_throughout]
    for index in range(repeats):
        for step in steps[index % 3 :] + steps[: index % 3]:
            step()
        log(f"(a)/(b) round {index + 1}/{repeats}: {result.bare_s[-1]:.3f} s / {result.end_to_end_s[-1]:.3f} s")
    return result


def record_job(result: OverheadResult, seconds: float, row: Any, late: bool) -> None:
    result.late += late
    result.end_to_end_s.append(seconds)
    result.job_inference_s.append(row.inference_s)
    for name, value in job_parts_ms(row, seconds).items():
        result.parts_ms.setdefault(name, []).append(value)


# --------------------------------------------------------------------------------------------------
# (c) mixed checkpoints and LoRAs in one processor


@dataclass
class MixedResult:
    warmup_pipeline_loads: int = 0
    warmup_lora_loads: int = 0
    pipeline_loads: int = 0
    lora_loads: int = 0
    evictions: int = 0
    jobs: int = 0
    seconds_by_lora_count: dict[int, list[float]] = field(default_factory=dict)

    @property
    def reloads(self) -> int:
        return self.pipeline_loads + self.lora_loads


def run_mixed(config: Any, specs: dict[str, ModelSpec], loras: dict[str, LoraSpec], jobs: int) -> MixedResult:
    from services.engine import DiffusersProcessor

    processor = DiffusersProcessor(replace(config, max_models=max(3, config.max_models)))
    models = [specs[name] for name in MODELS]
    for spec in models:
        timed(processor, text_request(spec))
        for name in LORAS:
            timed(processor, text_request(spec, (loras[name],)))
    result = MixedResult(warmup_pipeline_loads=processor.pipelines.loads, warmup_lora_loads=processor.loras.loads)
    evictions_before = processor.pipelines.evictions
    for index in range(jobs):
        combo = LORA_COMBOS[index % len(LORA_COMBOS)]
        request = text_request(models[index % len(models)], tuple(loras[name] for name in combo), seed=SEED + index)
        result.seconds_by_lora_count.setdefault(len(combo), []).append(timed(processor, request))
    result.jobs = jobs
    result.pipeline_loads = processor.pipelines.loads - result.warmup_pipeline_loads
    result.lora_loads = processor.loras.loads - result.warmup_lora_loads
    result.evictions = processor.pipelines.evictions - evictions_before
    return result


# --------------------------------------------------------------------------------------------------
# (d) random diffusion: batched against one by one


@dataclass
class BatchResult:
    images: int = 0
    batched_s: float = 0.0
    unbatched_s: float = 0.0
    max_pixel_diff: int = -1
    dataset_images: int = 0
    dataset_sizes: int = 0  # distinct prepare_source sizes of the uncropped dataset: a real job's batch groups

    @property
    def batched_ips(self) -> float:
        return self.images / self.batched_s

    @property
    def unbatched_ips(self) -> float:
        return self.images / self.unbatched_s

    @property
    def speedup(self) -> float:
        return self.batched_ips / self.unbatched_ips


def sample_paths() -> list[Path]:
    return sorted((ROOT / "fixtures" / "media" / "datasets" / "sample").glob("*.png"))


def dataset_size_groups(resolution: int) -> tuple[int, int]:
    """Images in the sample dataset, and how many sizes prepare_source gives them (as a real job does)."""
    from PIL import Image as PILImage

    from services.images import prepare_source

    sizes = set()
    for path in sample_paths():
        with PILImage.open(path) as image:
            sizes.add(prepare_source(image, resolution).size)
    return len(sample_paths()), len(sizes)


def dataset_sources(count: int, resolution: int) -> list[Image.Image]:
    """Sample images, centre-cropped square (so all share one size and can batch), then prepare_source."""
    from PIL import Image as PILImage

    from services.images import prepare_source

    paths = sample_paths()
    sources = []
    for path in (paths[index % len(paths)] for index in range(count)):
        with PILImage.open(path) as image:
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            sources.append(prepare_source(image.crop((left, top, left + side, top + side)), resolution))
    return sources


def img2img_request(spec: ModelSpec, sources: list[Image.Image], first_index: int, batch_size: int) -> Any:
    from services.types import GenerationRequest, ImageTask

    items = [
        ImageTask(
            prompt=PROMPTS[(first_index + offset) % len(PROMPTS)],
            seed=SEED + first_index + offset,
            width=source.width,
            height=source.height,
            init_image=source,
            meta={"index": first_index + offset},
        )
        for offset, source in enumerate(sources)
    ]
    return GenerationRequest(
        model=spec, items=items, steps=STEPS, strength=STRENGTH, scheduler=SCHEDULER, batch_size=batch_size
    )


def run_batching(processor: DiffusersProcessor, spec: ModelSpec) -> BatchResult:
    """Two halves in A B B A order, so drifting machine load weighs on both modes alike."""
    sources = dataset_sources(RANDOM_IMAGES, spec.resolution)
    half = RANDOM_IMAGES // 2
    timed(processor, img2img_request(spec, sources[:RANDOM_BATCH], 0, RANDOM_BATCH))
    timed(processor, img2img_request(spec, sources[:1], 0, 1))
    result = BatchResult(images=RANDOM_IMAGES)
    result.dataset_images, result.dataset_sizes = dataset_size_groups(spec.resolution)
    outputs: dict[int, list] = {RANDOM_BATCH: [], 1: []}
    for start, batch_size in ((0, RANDOM_BATCH), (0, 1), (half, 1), (half, RANDOM_BATCH)):
        request = img2img_request(spec, sources[start : start + half], start, batch_size)
        seconds = timed(processor, request, outputs[batch_size])
        if batch_size == 1:
            result.unbatched_s += seconds
        else:
            result.batched_s += seconds
        log(f"(d) images {start}-{start + half - 1}, batch {batch_size}: {seconds:.2f} s")
    result.max_pixel_diff = max(
        images_diff(a.image, b.image)
        for a, b in zip(sorted_outputs(outputs[RANDOM_BATCH]), sorted_outputs(outputs[1]), strict=True)
    )
    return result


def sorted_outputs(outputs: list) -> list:
    return sorted(outputs, key=lambda output: output.meta["index"])


def images_diff(first: Image.Image, second: Image.Image) -> int:
    import numpy as np

    return int(np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16)).max())


# --------------------------------------------------------------------------------------------------
# The report


@dataclass
class Context:
    started: datetime
    seconds: float
    threads: int
    worker_threads: int
    repeats: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def passed(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def machine_section(context: Context) -> list[str]:
    import diffusers
    import torch

    loads = " / ".join(f"{a:.2f}" for a in context.load_before), " / ".join(f"{a:.2f}" for a in context.load_after)
    return [
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| date (UTC) | {context.started:%Y-%m-%d %H:%M} |",
        f"| CPU | {cpu_model()}, {os.cpu_count()} cores, no GPU used |",
        f"| torch threads | {context.threads} in the bench process, {context.worker_threads} in the worker |",
        f"| versions | torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"Python {platform.python_version()} |",
        f"| load average (1/5/15 min) | {loads[0]} at start, {loads[1]} at the end |",
        f"| run | {context.seconds:.0f} s in all; N = {context.repeats} |",
        "",
    ]


def overhead_section(result: OverheadResult) -> list[str]:
    bare, e2e = median(result.bare_s), median(result.end_to_end_s)
    polled = median(result.polled_throughout_s)
    return [
        "## (a) bare services/ call vs (b) the same job through PostgreSQL, Redis and a worker",
        "",
        f"One {SIZE}x{SIZE} text-to-image image, {STEPS} steps, `{SCHEDULER}`, guidance 7.5, seed {SEED},",
        f"model `{MODELS[0]}`. (a) times `DiffusersProcessor.generate` in this process. (b) times",
        "`job_create_generation` until the row reads SUCCEEDED, through a `celery worker --pool prefork",
        f"--concurrency 1` process; the poller sleeps through the first {QUIET_FRACTION:.0%} of the fastest bare run,",
        f"then reads the row every {POLL_S * 1000:.0f} ms ({result.late} of {len(result.end_to_end_s)} runs were",
        "already done at the first read: those overstate (b)). (b') is the same job polled every",
        f"{POLL_S * 1000:.0f} ms from the submit. All sides were warmed first and each round rotates their order.",
        "",
        "| measure | median | min | max |",
        "| --- | ---: | ---: | ---: |",
        stat_row("(a) bare call, s/job", result.bare_s),
        stat_row("(b) end to end, s/job", result.end_to_end_s),
        stat_row("(b) the job's own inference_s", result.job_inference_s),
        stat_row(f"(b') end to end, polled every {POLL_S * 1000:.0f} ms throughout, s/job", result.polled_throughout_s),
        "",
        f"overhead = (b) - (a) = **{result.overhead_ms:.1f} ms per job** ({(e2e - bare) / bare:.1%} of the bare call);",
        f"overhead_ratio = b / a = **{result.ratio:.3f}**. The worker's PNG and (a)'s image differ by at most",
        f"{result.max_pixel_diff}/255 per channel (0: the same pixels, so both sides did the same work).",
        f"(b') - (b) = {(polled - e2e) * 1000:+.1f} ms: how much the bench's own poller disturbs the job. On 2 shared",
        "cores a 5 ms poller and the PostgreSQL backend it wakes can take CPU from the worker's model run (tens of",
        "ms when other work is running too), which is why (b) keeps it quiet for most of the run: the service's",
        "clients poll the API every second or so, not every 5 ms.",
        "",
        "Where (b)'s extra time goes (medians; the first four from the row's own timestamps):",
        "",
        "| part | ms |",
        "| --- | ---: |",
        *(f"| {name} | {median(values):.1f} |" for name, values in result.parts_ms.items()),
        f"| (b) - inference_s: everything outside the worker's model run | {result.outside_inference_ms:.1f} |",
        f"| progress + cancel checks inside the loop ({STEPS + 1} `ProgressReporter.step` calls, timed alone) | "
        f"{result.progress_checks_ms:.1f} |",
        f"| the worker's inference_s - (a): those checks plus the model run's variance | "
        f"{(median(result.job_inference_s) - bare) * 1000:.1f} |",
        "",
    ]


def stat_row(name: str, values: list[float]) -> str:
    return f"| {name} | {median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"


def mixed_section(result: MixedResult) -> list[str]:
    lines = [
        "## (c) mixed workload: 3 checkpoints x LoRA combinations in one processor",
        "",
        f"`max_models=3`. Warm-up touched each of {', '.join(MODELS)} once and each (model, LoRA) pair once",
        f"({', '.join(LORAS)}); then {result.jobs} jobs cycled the models and the LoRA sets none / ink / glow / both.",
        "",
        "| count | warm-up | after warm-up (must be 0) |",
        "| --- | ---: | ---: |",
        f"| pipeline loads (`processor.pipelines.loads`) | {result.warmup_pipeline_loads} | {result.pipeline_loads} |",
        f"| LoRA loads (`processor.loras.loads`) | {result.warmup_lora_loads} | {result.lora_loads} |",
        f"| pipeline evictions | | {result.evictions} |",
        "",
        "| LoRAs active | jobs | median s/job |",
        "| ---: | ---: | ---: |",
    ]
    for count, values in sorted(result.seconds_by_lora_count.items()):
        lines.append(f"| {count} | {len(values)} | {median(values):.3f} |")
    lines += ["", "Active LoRAs cost `set_adapters` per job and extra work in every attention projection.", ""]
    return lines


def batching_section(result: BatchResult) -> list[str]:
    return [
        "## (d) random diffusion: batched vs one by one",
        "",
        f"{result.images} img2img images at {SIZE}x{SIZE} (the sample dataset, centre-cropped and `prepare_source`d),",
        f"{STEPS} steps at strength {STRENGTH}, `{MODELS[0]}`, through `DiffusersProcessor.generate`; two halves in",
        "A B B A order.",
        "",
        "| mode | seconds | images/s |",
        "| --- | ---: | ---: |",
        f"| batch_size {RANDOM_BATCH} | {result.batched_s:.2f} | {result.batched_ips:.3f} |",
        f"| batch_size 1 | {result.unbatched_s:.2f} | {result.unbatched_ips:.3f} |",
        "",
        f"batch_speedup = **{result.speedup:.3f}**. Same seeds in both modes: images differ by at most",
        f"{result.max_pixel_diff}/255 per channel (float rounding of different matrix shapes; DESIGN rule 10).",
        "On a CPU the model already keeps the cores busy at batch 1, so batching mostly saves per-call",
        "overhead; on a GPU it fills the device. A real random-diffusion job batches only images of one size",
        f"(`_batches` groups by width and height): uncropped, the sample dataset's {result.dataset_images} images",
        f"come out of `prepare_source` in {result.dataset_sizes} sizes, so such a job runs mostly batches of one.",
        "",
    ]


def targets_section(overhead: OverheadResult, mixed: MixedResult, batching: BatchResult) -> list[str]:
    fraction = overhead.overhead_ms / 1000 / median(overhead.bare_s)
    overhead_ok = fraction <= TARGET_OVERHEAD_FRACTION and overhead.overhead_ms <= TARGET_OVERHEAD_MS
    return [
        "## Targets",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
        f"| overhead <= {TARGET_OVERHEAD_FRACTION:.0%} of a job and <= {TARGET_OVERHEAD_MS:.0f} ms | "
        f"{overhead.overhead_ms:.1f} ms, {fraction:.1%} | {passed(overhead_ok)} |",
        f"| zero reloads after warm-up | {mixed.reloads} | {passed(mixed.reloads == 0)} |",
        f"| batching at least as fast as one by one | {batching.speedup:.3f}x | {passed(batching.speedup >= 1.0)} |",
        "",
    ]


def gpu_note() -> list[str]:
    return [
        "## GPU timings (not run here)",
        "",
        "The figures that matter in production are the full SD-1.5 shape on a GPU: 512x512, fp16, 30 steps,",
        "batch 1 and 4 (published A100 figures: ~31 it/s with plain SDPA, ~47 it/s with `torch.compile` and",
        "channels_last). They need a CUDA machine. On one, run",
        "",
        "    python -m bench.run --gpu",
        "",
        "It builds the `full` development checkpoint (the files of `build_dev_models --shape full`, ~4.3 GB,",
        "random weights, same compute as the real model), loads it in fp16 on CUDA with plain SDPA (no compile)",
        "and writes denoising-loop it/s and images/s for batch 1 and 4 to docs/benchmarks-gpu.md. It is kept",
        "simple and has not been run: there was no GPU where this file was written.",
        "",
    ]


def write_report(
    path: Path, context: Context, overhead: OverheadResult, mixed: MixedResult, batching: BatchResult
) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench.run` (`make bench`) on the `small` development checkpoints (random weights,",
        "SD-1 shape, 128x128 native). Timings on a shared CPU are noisy: compare the ratios, which were measured",
        "side by side in one run, rather than the absolute seconds.",
        "",
        *machine_section(context),
        *overhead_section(overhead),
        *mixed_section(mixed),
        *batching_section(batching),
        *targets_section(overhead, mixed, batching),
        *gpu_note(),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def final_line(overhead: OverheadResult, mixed: MixedResult, batching: BatchResult) -> str:
    return (
        f"overhead_ratio={overhead.ratio:.3f} overhead_ms={overhead.overhead_ms:.1f} "
        f"reloads={mixed.reloads} batch_speedup={batching.speedup:.3f}"
    )


# --------------------------------------------------------------------------------------------------
# --gpu: the SD-1.5 shape on CUDA (kept simple; untested where it was written)


def gpu_timings(
    processor: DiffusersProcessor, spec: ModelSpec, *, batch: int, steps: int, repeats: int
) -> tuple[float, float]:
    """Median denoising-loop it/s and images/s for one batch size, after one warm-up run."""
    import torch

    from services.types import GenerationRequest, ImageTask

    sync = torch.cuda.synchronize if processor.device.type == "cuda" else (lambda: None)
    items = [
        ImageTask(prompt=PROMPT, seed=SEED + index, width=spec.resolution, height=spec.resolution)
        for index in range(batch)
    ]
    request = GenerationRequest(model=spec, items=items, steps=steps, scheduler=SCHEDULER, batch_size=batch)
    loop_its, images_per_s = [], []
    for run in range(repeats + 1):
        marks: list[float] = []

        def on_step(done: int, marks: list[float] = marks) -> bool:
            if done:
                sync()  # kernels run asynchronously: wait for the step before reading the clock
                marks.append(time.perf_counter())
            return True

        sync()
        started = time.perf_counter()
        processor.generate(request, on_step=on_step)
        sync()
        if run:
            loop_its.append((len(marks) - 1) / (marks[-1] - marks[0]))
            images_per_s.append(batch / (time.perf_counter() - started))
    return median(loop_its), median(images_per_s)


def run_gpu(repeats: int, output: Path) -> str:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DIFFUSION_DEVICE": "cuda"})
    import django
    import torch

    django.setup()
    from django.conf import settings

    from image_model_domain.management.commands.build_dev_models import dev_models_build_files
    from services.engine import DiffusersProcessor, EngineConfig
    from services.types import ModelSpec

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; none is visible to torch.")
    log("building the full SD-1.5-shaped checkpoint (once; ~4.3 GB)")
    dev_models_build_files("full")
    source = str(settings.MODEL_ROOT / "dev" / "sd15-random")
    spec = ModelSpec(name="sd15-random", source=source, dtype="float16", resolution=512)
    processor = DiffusersProcessor(EngineConfig(device="cuda", dtype="float16"))
    timings = {batch: gpu_timings(processor, spec, batch=batch, steps=30, repeats=repeats) for batch in (1, 4)}
    lines = [
        "# GPU benchmarks",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {torch.cuda.get_device_name()}, torch {torch.__version__},",
        "SD-1.5 shape (random weights), 512x512, fp16, plain SDPA, guidance 7.5. Published A100: ~31 it/s plain,",
        "~47 it/s with compile + channels_last.",
        "",
        "| batch | steps | denoising it/s | images/s |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {batch} | 30 | {its:.2f} | {ips:.3f} |" for batch, (its, ips) in timings.items()),
        "",
    ]
    output.write_text("\n".join(lines))
    log(f"wrote {output}")
    return " ".join(
        f"batch{batch}_it_s={its:.2f} batch{batch}_images_s={ips:.3f}" for batch, (its, ips) in timings.items()
    )


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="N: timed runs of (a) and (b) each (default 9)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both processes (default 1)")
    parser.add_argument("--mixed-jobs", type=int, default=24, help="jobs of part (c) after warm-up (default 24)")
    parser.add_argument("--output", type=Path, help="the report (default docs/benchmarks.md, or -gpu.md with --gpu)")
    parser.add_argument("--gpu", action="store_true", help="time the SD-1.5 shape on CUDA instead (see the report)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.mixed_jobs < 1:
        parser.error("--repeats, --threads and --mixed-jobs must be at least 1")
    return args


def run_cpu(args: argparse.Namespace) -> str:
    started, clock = datetime.now(UTC), time.perf_counter()
    load_before = os.getloadavg()
    env = bench_environment(threads=args.threads, device="cpu")
    os.environ.update({**env, "LOG_LEVEL": "WARNING"})  # before Django or torch are imported
    if database_ensure(DATABASE_URL):
        log(f"created the database of {DATABASE_URL}")
    log("migrating, registering the small checkpoints")
    django_prepare()
    import torch

    from services.engine import DiffusersProcessor
    from tasks.specs import engine_config

    torch.set_num_threads(args.threads)
    quiet_libraries()
    config = engine_config()
    processor = DiffusersProcessor(config)
    specs, loras = model_specs(), lora_specs()
    log("starting the worker")
    with running_worker(env) as worker:
        overhead = run_overhead(processor, worker, specs[MODELS[0]], args.repeats)
    worker_threads = worker_torch_threads(env)
    log("(c) mixed checkpoints and LoRAs")
    mixed = run_mixed(config, specs, loras, args.mixed_jobs)
    log("(d) random diffusion, batched and one by one")
    batching = run_batching(processor, specs[MODELS[0]])
    context = Context(
        started=started, seconds=time.perf_counter() - clock, threads=torch.get_num_threads(),
        worker_threads=worker_threads, repeats=args.repeats, load_before=load_before, load_after=os.getloadavg(),
    )  # fmt: skip
    output = args.output or DOCS / "benchmarks.md"
    write_report(output, context, overhead, mixed, batching)
    log(f"wrote {output}")
    return final_line(overhead, mixed, batching)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    line = run_gpu(args.repeats, args.output or DOCS / "benchmarks-gpu.md") if args.gpu else run_cpu(args)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
