"""(d) random diffusion: batched against one by one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import PROMPTS, RANDOM_BATCH, RANDOM_IMAGES, ROOT, SCHEDULER, SEED, STEPS, STRENGTH, log, timed

if TYPE_CHECKING:
    from PIL import Image

    from services.engine import DiffusersEngine
    from services.types import ModelSpec


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


def run_batching(engine: DiffusersEngine, spec: ModelSpec) -> BatchResult:
    """Two halves in A B B A order, so drifting machine load weighs on both modes alike."""
    sources = dataset_sources(RANDOM_IMAGES, spec.resolution)
    half = RANDOM_IMAGES // 2
    timed(engine, img2img_request(spec, sources[:RANDOM_BATCH], 0, RANDOM_BATCH))
    timed(engine, img2img_request(spec, sources[:1], 0, 1))
    result = BatchResult(images=RANDOM_IMAGES)
    result.dataset_images, result.dataset_sizes = dataset_size_groups(spec.resolution)
    outputs: dict[int, list] = {RANDOM_BATCH: [], 1: []}
    for start, batch_size in ((0, RANDOM_BATCH), (0, 1), (half, 1), (half, RANDOM_BATCH)):
        request = img2img_request(spec, sources[start : start + half], start, batch_size)
        seconds = timed(engine, request, outputs[batch_size])
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
