"""services/ driven directly, as a notebook or a benchmark would: no Django, no queue."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from devtools.devmodels import build_checkpoint, build_lora
from services.engine import DiffusersEngine, EngineConfig
from services.images import fit_size, prepare_source
from services.pngmeta import png_bytes, read_recipe
from services.schedulers import SCHEDULERS
from services.types import Cancelled, GenerationRequest, ImageTask, LoraSpec, ModelSpec, ModelUnavailable


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        build_checkpoint(root / name, shape="tiny", seed=seed)
    for name, seed in (("ink", 11), ("glow", 12), ("third", 13)):
        build_lora(root / name, shape="tiny", seed=seed, weight_name="lora.safetensors")
    return {path.name: str(path) for path in root.iterdir()}


def spec(checkpoints: dict[str, str], name: str = "a") -> ModelSpec:
    return ModelSpec(name=name, source=checkpoints[name], resolution=64)


def lora(checkpoints: dict[str, str], name: str, scale: float = 1.0) -> LoraSpec:
    return LoraSpec(name=name, source=checkpoints[name], weight_name="lora.safetensors", scale=scale)


def run(processor: DiffusersEngine, request: GenerationRequest, **kwargs) -> list:  # noqa: ANN003
    outputs: list = []
    processor.generate(request, on_batch=outputs.extend, **kwargs)
    return sorted(outputs, key=lambda output: output.meta["index"])


def items(count: int = 1, seed: int = 5) -> list[ImageTask]:
    return [
        ImageTask(prompt=f"prompt {i}", seed=seed + i, width=64, height=64, meta={"index": i}) for i in range(count)
    ]


def test_each_checkpoint_loads_once_and_the_least_recently_used_is_evicted(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig(max_models=2))
    for name in ("a", "b", "a", "b", "a"):
        run(processor, GenerationRequest(model=spec(checkpoints, name), items=items(), steps=1))
    assert processor.pipelines.loads == 2
    run(processor, GenerationRequest(model=spec(checkpoints, "c"), items=items(), steps=1))
    assert processor.pipelines.resident_names() == ["a", "c"]  # b was least recently used
    assert processor.pipelines.loads == 3 and processor.pipelines.evictions == 1


def test_img2img_shares_the_text_to_image_modules(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig())
    resident, _ = processor.pipelines.get(spec(checkpoints))
    assert resident.img2img.unet is resident.text2img.unet and resident.img2img.vae is resident.text2img.vae
    assert {p.dtype for p in resident.img2img.unet.parameters()} == {resident.dtype}


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_named_scheduler_runs(checkpoints: dict[str, str], scheduler: str) -> None:
    processor = DiffusersEngine(EngineConfig())
    (output,) = run(processor, GenerationRequest(model=spec(checkpoints), items=items(), steps=3, scheduler=scheduler))
    assert output.image.size == (64, 64) and output.recipe.scheduler == scheduler
    assert np.asarray(output.image).std() > 0


def test_loras_load_once_switch_per_job_and_the_oldest_is_deleted(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig(max_loras_per_model=2))
    base = run(processor, GenerationRequest(model=spec(checkpoints), items=items(), steps=2))[0]
    for combo in (["ink"], ["glow"], ["ink", "glow"], ["ink"]):
        request = GenerationRequest(
            model=spec(checkpoints), items=items(), steps=2, loras=tuple(lora(checkpoints, name) for name in combo)
        )
        run(processor, request)
    assert processor.loras.loads == 2
    run(
        processor,
        GenerationRequest(model=spec(checkpoints), items=items(), steps=2, loras=(lora(checkpoints, "third"),)),
    )
    resident, _ = processor.pipelines.get(spec(checkpoints))
    assert list(resident.loras) == ["ink", "third"]  # glow was least recently used
    again = run(processor, GenerationRequest(model=spec(checkpoints), items=items(), steps=2))[0]
    assert np.array_equal(np.asarray(base.image), np.asarray(again.image))


def test_a_non_safetensors_lora_is_refused_before_anything_is_read(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig())
    evil = LoraSpec(name="evil", source=checkpoints["ink"], weight_name="lora.bin")
    with pytest.raises(ModelUnavailable, match="safetensors"):
        run(processor, GenerationRequest(model=spec(checkpoints), items=items(), steps=1, loras=(evil,)))


def test_a_false_step_callback_cancels_and_returns_no_images(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig())
    calls = []

    def on_step(done: int) -> bool:
        calls.append(done)
        return len(calls) < 3

    with pytest.raises(Cancelled):
        run(processor, GenerationRequest(model=spec(checkpoints), items=items(2), steps=50), on_step=on_step)
    assert len(calls) == 3  # stopped at the first step that saw the flag


def test_the_png_carries_the_recipe_that_replays_it(checkpoints: dict[str, str]) -> None:
    processor = DiffusersEngine(EngineConfig())
    request = GenerationRequest(
        model=spec(checkpoints),
        items=items(seed=77),
        steps=3,
        scheduler="ddim",
        loras=(lora(checkpoints, "ink", 0.7),),
        lora_scale=0.9,
    )
    (output,) = run(processor, request)
    recipe = read_recipe(png_bytes(output.image, output.recipe))
    assert recipe["seed"] == 77 and recipe["loras"] == [{"name": "ink", "scale": 0.7}] and recipe["lora_scale"] == 0.9
    assert recipe["model_revision"] and recipe["versions"]["diffusers"]
    replay = GenerationRequest(
        model=spec(checkpoints),
        steps=recipe["steps"],
        scheduler=recipe["scheduler"],
        lora_scale=recipe["lora_scale"],
        loras=tuple(lora(checkpoints, item["name"], item["scale"]) for item in recipe["loras"]),
        items=[
            ImageTask(
                prompt=recipe["prompt"],
                seed=recipe["seed"],
                width=recipe["width"],
                height=recipe["height"],
                meta={"index": 0},
            )
        ],
    )
    (again,) = run(processor, replay)
    assert np.array_equal(np.asarray(output.image), np.asarray(again.image))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16", "CMYK", "LA", "1"])
def test_source_images_of_any_mode_become_rgb_at_the_model_size(mode: str) -> None:
    image = Image.new("RGB", (300, 200), (10, 120, 200)).convert(mode)
    prepared = prepare_source(image, 64)
    assert prepared.mode == "RGB" and prepared.size == (64, 40)


def test_fit_size_keeps_the_aspect_ratio_in_multiples_of_eight() -> None:
    assert fit_size(512, 512, 512) == (512, 512)
    assert fit_size(4000, 3000, 512) == (512, 384)
    assert fit_size(100, 1000, 512) == (48, 512)
    assert fit_size(20, 5000, 64) == (8, 64)  # never below 8
    assert fit_size(10, 10, 512) == (512, 512)  # small sources are scaled up
