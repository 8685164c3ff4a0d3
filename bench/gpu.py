"""--gpu: the SD-1.5 shape on CUDA (kept simple; untested where it was written)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import PROMPT, SCHEDULER, SEED, log, median

if TYPE_CHECKING:
    from services.engine import DiffusersProcessor
    from services.types import ModelSpec


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
