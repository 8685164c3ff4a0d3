"""What the bench parts share: settings of the runs, logging, requests for the small checkpoints."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.engine import DiffusersEngine
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
# Requests


def model_specs() -> dict[str, ModelSpec]:
    from image_model_domain.models import DLModel
    from tasks.specs import model_spec

    return {model.name: model_spec(model) for model in DLModel.objects.filter(name__in=MODELS)}


def lora_specs() -> dict[str, LoraSpec]:
    from tasks.specs import lora_specs as specs_for

    return {spec.name: spec for spec in specs_for([{"name": name, "scale": 1.0} for name in LORAS])}


def text_request(spec: ModelSpec, loras: tuple[LoraSpec, ...] = (), *, seed: int = SEED) -> GenerationRequest:
    """One 128x128 text-to-image image: the request a worker builds for job_create_generation's job."""
    from image_model_domain.jobs import generation_plan, generation_request
    from image_model_domain.models import GenerationJob, JobKind
    from tasks.specs import job_requests

    _, request = generation_request(
        model_name=spec.name,
        prompt=PROMPT,
        steps=STEPS,
        width=SIZE,
        height=SIZE,
        scheduler=SCHEDULER,
        loras=[{"name": lora.name, "scale": lora.scale} for lora in loras],
    )
    job = GenerationJob(
        kind=JobKind.TEXT_TO_IMAGE, params={**request, **generation_plan(seed=seed, num_images=1)}, seed=seed
    )
    (generation,) = job_requests(job)
    return generation


def timed(engine: DiffusersEngine, request: GenerationRequest, outputs: list | None = None) -> float:
    on_batch = outputs.extend if outputs is not None else None
    started = time.perf_counter()
    engine.generate(request, on_batch=on_batch)
    return time.perf_counter() - started
