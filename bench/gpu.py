"""--gpu: the SD-1.5 shape on CUDA, plain and with each acceleration (not yet run on a GPU)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import PROMPT, SCHEDULER, SEED, log, median

if TYPE_CHECKING:
    from services.engine import DiffusersEngine
    from services.types import ModelSpec


def gpu_timings(
    engine: DiffusersEngine, spec: ModelSpec, *, batch: int, steps: int, repeats: int
) -> tuple[float, float]:
    """Median denoising-loop it/s and images/s for one batch size, after one warm-up run."""
    import torch

    from services.types import GenerationRequest, ImageTask

    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
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
        engine.generate(request, on_step=on_step)
        sync()
        if run:
            loop_its.append((len(marks) - 1) / (marks[-1] - marks[0]))
            images_per_s.append(batch / (time.perf_counter() - started))
    return median(loop_its), median(images_per_s)


ACCELERATIONS: tuple[tuple[str, dict[str, object]], ...] = (
    ("plain (SDPA)", {"channels_last": False}),
    ("+ channels_last", {"channels_last": True}),
    ("+ fused q/k/v", {"channels_last": True, "fuse_qkv": True}),
    ("+ torch.compile", {"channels_last": True, "fuse_qkv": True, "compile": True}),
)


def run_gpu(repeats: int, output: Path) -> str:
    """Each acceleration of services/accel.py, cumulatively, at batch 1 and 4; one pipeline at a time."""
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DIFFUSION_DEVICE": "cuda"})
    import django
    import torch

    django.setup()
    from django.conf import settings

    from image_model_domain.management.commands.build_dev_models import dev_models_build_files
    from services.accel import AccelOptions
    from services.engine import DiffusersEngine, EngineConfig
    from services.types import ModelSpec

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; none is visible to torch.")
    log("building the full SD-1.5-shaped checkpoint (once; ~4.3 GB)")
    dev_models_build_files("full")
    source = str(settings.MODEL_ROOT / "dev" / "sd15-random")
    spec = ModelSpec(name="sd15-random", source=source, dtype="float16", resolution=512)
    cache_dir = str(settings.VAR_DIR / "inductor-cache")
    rows: list[tuple[str, int, float, float]] = []
    for label, options in ACCELERATIONS:
        accel = AccelOptions(compile_cache_dir=cache_dir, **options)  # type: ignore[arg-type]
        log(f"{label}: loading{' and compiling' if accel.compile else ''}")
        engine = DiffusersEngine(EngineConfig(device="cuda", dtype="float16", accel=accel))
        engine.preload([spec])  # compiles and warms up at 512x512 where compile is on
        for batch in (1, 4):
            its, ips = gpu_timings(engine, spec, batch=batch, steps=30, repeats=repeats)
            rows.append((label, batch, its, ips))
            log(f"{label} batch {batch}: {its:.2f} it/s, {ips:.3f} images/s")
        del engine
        torch.cuda.empty_cache()
    lines = [
        "# GPU benchmarks",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {torch.cuda.get_device_name()}, torch {torch.__version__},",
        f"SD-1.5 shape (random weights), 512x512, fp16, {SCHEDULER}, guidance 7.5, 30 steps; each row adds one",
        "acceleration to the row above (services/accel.py). Published A100: ~31 it/s plain, ~47 compiled.",
        "",
        "| pipeline | batch | denoising it/s | images/s |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {label} | {batch} | {its:.2f} | {ips:.3f} |" for label, batch, its, ips in rows),
        "",
        "The service end to end (HTTP, PostgreSQL, Redis, worker) is not measured by this command yet.",
        "",
    ]
    output.write_text("\n".join(lines))
    log(f"wrote {output}")
    return " ".join(f"{label.replace(' ', '')}_b{batch}_it_s={its:.2f}" for label, batch, its, _ in rows)
