"""--gpu: the SD-1.5 shape on CUDA, plain and with each acceleration, and the service end to end (not yet run on
a GPU; --gpu-smoke runs the same steps on the CPU with the tiny checkpoint)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import PROMPT, SCHEDULER, SEED, log, median
from bench.gpu_service import ServiceShape, service_environment, service_lines, service_prepare, service_timings

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
        counted = [0]

        def on_step(done: int, marks: list[float] = marks, counted: list[int] = counted) -> bool:
            if done:
                counted[0] += 1
                # Kernels run asynchronously: the clock is read after waiting for the first and the last step
                # only, so the loop runs as it does in the service (a wait at every step would stall it).
                if counted[0] in (1, steps):
                    sync()
                    marks.append(time.perf_counter())
            return True

        sync()
        started = time.perf_counter()
        engine.generate(request, on_step=on_step)
        sync()
        if run:
            loop_its.append((steps - 1) / (marks[-1] - marks[0]))
            images_per_s.append(batch / (time.perf_counter() - started))
    return median(loop_its), median(images_per_s)


ACCELERATIONS: tuple[tuple[str, dict[str, object]], ...] = (
    ("plain (SDPA)", {"channels_last": False}),
    ("+ channels_last", {"channels_last": True}),
    ("+ fused q/k/v", {"channels_last": True, "fuse_qkv": True}),
    ("+ torch.compile", {"channels_last": True, "fuse_qkv": True, "compile": True}),
)


@dataclass(frozen=True)
class GpuShape:
    """What a --gpu run times: the full SD-1.5 shape on CUDA, or (--gpu-smoke) the tiny one on the CPU,
    which runs every step of the command in a minute or two to show it works where no GPU is lent."""

    checkpoints: str  # the build_dev_models shape
    model: str
    size: int
    steps: int
    device: str
    dtype: str
    batches: tuple[int, ...]
    accelerations: tuple[tuple[str, dict[str, object]], ...]


FULL = GpuShape("full", "sd15-random", 512, 30, "cuda", "float16", (1, 4), ACCELERATIONS)
SMOKE = GpuShape("tiny", "tiny-sd-a", 64, 3, "cpu", "float32", (1, 2), ACCELERATIONS[:3])  # compile: minutes on a CPU


def run_gpu(repeats: int, output: Path, *, smoke: bool = False) -> str:
    """Each acceleration of services/accel.py, cumulatively, at each batch size, one pipeline at a time; then
    the service end to end with the last one's settings (bench/gpu_service.py)."""
    shape = SMOKE if smoke else FULL
    last_label, last_options = shape.accelerations[-1]
    service_shape = ServiceShape(
        model=shape.model, source=f"dev/{shape.model}", size=shape.size, steps=shape.steps, device=shape.device,
        dtype=shape.dtype, compile=bool(last_options.get("compile")),
    )  # fmt: skip
    env = service_environment(service_shape, max(shape.batches))
    os.environ.update(env)  # before Django: this process registers the model in the service's database
    import django
    import torch

    django.setup()
    from django.conf import settings

    from image_model_domain.management.commands.build_dev_models import dev_models_build_files
    from services.accel import AccelOptions
    from services.engine import DiffusersEngine, EngineConfig
    from services.types import ModelSpec

    if shape.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device; none is visible to torch.")
    log(f"building the {shape.checkpoints} development checkpoints (once{'; ~4.3 GB' if not smoke else ''})")
    dev_models_build_files(shape.checkpoints)
    service_prepare(service_shape)
    source = str(settings.MODEL_ROOT / "dev" / shape.model)
    spec = ModelSpec(name=shape.model, source=source, dtype=shape.dtype, resolution=shape.size)
    cache_dir = str(settings.DIFFUSION_COMPILE_CACHE_DIR)
    rows: list[tuple[str, int, float, float]] = []
    for label, options in shape.accelerations:
        accel = AccelOptions(compile_cache_dir=cache_dir, **options)  # type: ignore[arg-type]
        log(f"{label}: loading{' and compiling' if accel.compile else ''}")
        engine = DiffusersEngine(EngineConfig(device=shape.device, dtype=shape.dtype, accel=accel))
        engine.preload([spec])  # compiles and warms up at the model's resolution where compile is on
        for batch in shape.batches:
            its, ips = gpu_timings(engine, spec, batch=batch, steps=shape.steps, repeats=repeats)
            rows.append((label, batch, its, ips))
            log(f"{label} batch {batch}: {its:.2f} it/s, {ips:.3f} images/s")
        del engine
        if shape.device == "cuda":
            torch.cuda.empty_cache()
    log("the service end to end: web command and worker, with the last row's settings")
    service_s = service_timings(service_shape, env, shape.batches, repeats)
    bare_s = {batch: 1 / ips for label, batch, _, ips in rows if label == last_label}
    device_name = torch.cuda.get_device_name() if shape.device == "cuda" else "CPU (--gpu-smoke: not a measurement)"
    lines = [
        "# GPU benchmarks",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {device_name}, torch {torch.__version__},",
        f"{shape.model} ({shape.checkpoints} shape, random weights), {shape.size}x{shape.size}, {shape.dtype},",
        f"{SCHEDULER}, guidance 7.5, {shape.steps} steps; each row adds one acceleration to the row above",
        "(services/accel.py). Published A100: ~31 it/s plain, ~47 compiled.",
        "",
        "| pipeline | batch | denoising it/s | images/s |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {label} | {batch} | {its:.2f} | {ips:.3f} |" for label, batch, its, ips in rows),
        "",
        *service_lines(bare_s, service_s, last_label.removeprefix("+ ")),
    ]
    output.write_text("\n".join(lines))
    log(f"wrote {output}")
    parts = [f"{label.replace(' ', '')}_b{batch}_it_s={its:.2f}" for label, batch, its, _ in rows]
    parts += [f"service_over_bare_b{batch}={service_s[batch] / bare_s[batch]:.3f}" for batch in shape.batches]
    return " ".join(parts)
