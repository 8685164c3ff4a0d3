"""The engine reports exactly denoising_steps() per image, whatever the scheduler's call pattern."""

from __future__ import annotations

import pytest
from PIL import Image

from devtools.devmodels import build_checkpoint
from services.engine import DiffusersEngine, EngineConfig
from services.steps import denoising_steps
from services.types import GenerationRequest, ImageTask, ModelSpec


@pytest.fixture(scope="module")
def processor_and_spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiffusersEngine, ModelSpec]:
    root = tmp_path_factory.mktemp("models") / "a"
    build_checkpoint(root, shape="tiny", seed=1)
    return DiffusersEngine(EngineConfig()), ModelSpec(name="a", source=str(root), resolution=64)


def test_denoising_steps_is_what_diffusers_img2img_computes() -> None:
    assert denoising_steps(150, None) == 150
    assert denoising_steps(150, 0.2) == 30
    assert denoising_steps(10, 0.25) == 2  # int(), not round()
    assert denoising_steps(10, 1.0) == 10
    assert denoising_steps(10, 0.05) == 0


# Heun calls back twice per step and PNDM once more than it steps: counting callbacks would be wrong.
@pytest.mark.parametrize("scheduler", ["euler", "heun", "pndm", "dpmpp_2m"])
@pytest.mark.parametrize("strength", [None, 0.3])
def test_progress_reported_by_the_engine_adds_up_to_denoising_steps(processor_and_spec, scheduler, strength) -> None:  # noqa: ANN001
    processor, spec = processor_and_spec
    init = Image.new("RGB", (64, 64), (200, 10, 10)) if strength is not None else None
    items = [
        ImageTask(prompt="a fox", seed=i, width=64, height=64, init_image=init, meta={"index": i}) for i in range(2)
    ]
    reported: list[int] = []

    def on_step(done: int) -> bool:
        reported.append(done)
        return True

    request = GenerationRequest(
        model=spec, items=items, steps=10, strength=strength or 0.75, scheduler=scheduler, batch_size=2
    )
    processor.generate(request, on_step=on_step)
    assert sum(reported) == 2 * denoising_steps(10, strength)
