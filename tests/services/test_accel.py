"""Acceleration options keep the pixels: each is compared with the plain pipeline on the tiny checkpoint.

Tolerance: at most 2 levels (of 255) on any pixel value, and under 0.25 levels on average; float
reductions in another order (fused matmuls, NHWC convolutions, another attention kernel, compiled
kernels) may round a value differently, nothing more. torch.compile on a CPU takes minutes: its test
runs only with RUN_COMPILE_TESTS=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from devtools.devmodels import build_checkpoint, build_lora
from devtools.sdxl import build_xl_checkpoint, build_xl_lora
from services.accel import AccelOptions
from services.engine import DiffusersEngine, EngineConfig
from services.types import GenerationRequest, ImageTask, LoraSpec, ModelSpec, ModelUnavailable

MAX_LEVELS, MEAN_LEVELS = 2, 0.25


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    build_checkpoint(root / "a", shape="tiny", seed=1)
    build_lora(root / "ink", shape="tiny", seed=11, weight_name="lora.safetensors")
    build_xl_checkpoint(root / "xl", shape="tiny", seed=1)
    build_xl_lora(root / "xl-ink", shape="tiny", seed=11, weight_name="lora.safetensors")
    return {"model": root / "a", "lora": root / "ink", "xl-model": root / "xl", "xl-lora": root / "xl-ink"}


def render(
    paths: dict[str, Path], accel: AccelOptions, *, lora: bool = False, overrides: tuple = (), family: str = "sd1"
) -> np.ndarray:
    prefix = "xl-" if family == "sdxl" else ""
    processor = DiffusersEngine(EngineConfig(accel=accel))
    loras = (LoraSpec(name="ink", source=str(paths[prefix + "lora"]), weight_name="lora.safetensors", scale=1.0),)
    model = ModelSpec(name="a", source=str(paths[prefix + "model"]), family=family, resolution=64, accel=overrides)
    request = GenerationRequest(
        model=model,
        items=[ImageTask(prompt="a red fox", seed=s, width=64, height=64, meta={"index": s}) for s in (3, 4)],
        steps=4,
        loras=loras if lora else (),
    )
    outputs: list = []
    processor.generate(request, on_batch=outputs.extend)
    return np.stack([np.asarray(o.image, dtype=np.int16) for o in sorted(outputs, key=lambda o: o.meta["index"])])


def assert_same_pixels(a: np.ndarray, b: np.ndarray) -> None:
    difference = np.abs(a - b)
    assert difference.max() <= MAX_LEVELS and difference.mean() < MEAN_LEVELS, (difference.max(), difference.mean())


@pytest.fixture(scope="module")
def plain(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    options = AccelOptions(attention="sdpa", channels_last=False)
    return {"base": render(paths, options), "lora": render(paths, options, lora=True)}


@pytest.mark.parametrize(
    "options",
    [
        AccelOptions(attention="eager", channels_last=False),
        AccelOptions(channels_last=True),
        AccelOptions(channels_last=False, fuse_qkv=True),
        AccelOptions(attention="eager", channels_last=True, fuse_qkv=True),
    ],
    ids=["eager-attention", "channels-last", "fused-qkv", "all-three"],
)
def test_each_acceleration_keeps_the_pixels_with_and_without_a_lora(paths, plain, options: AccelOptions) -> None:  # noqa: ANN001
    assert_same_pixels(render(paths, options), plain["base"])
    # With fused q/k/v the UNet is unfused for a LoRA job: the LoRA still shows, exactly as unfused.
    with_lora = render(paths, options, lora=True)
    assert_same_pixels(with_lora, plain["lora"])
    assert np.abs(with_lora - plain["base"]).mean() > 2


@pytest.mark.usefixtures("one_thread")
def test_the_accelerations_keep_an_sdxl_models_pixels_with_and_without_a_lora(paths) -> None:  # noqa: ANN001
    plain = AccelOptions(attention="sdpa", channels_last=False)
    every = AccelOptions(attention="eager", channels_last=True, fuse_qkv=True)
    base = render(paths, plain, family="sdxl")
    assert_same_pixels(render(paths, every, family="sdxl"), base)
    with_lora = render(paths, every, lora=True, family="sdxl")
    assert_same_pixels(with_lora, render(paths, plain, lora=True, family="sdxl"))
    assert np.abs(with_lora - base).mean() > 2


def test_a_models_metadata_overrides_the_worker_options(paths) -> None:  # noqa: ANN001
    from diffusers.models.attention_processor import AttnProcessor, FusedAttnProcessor2_0

    processor = DiffusersEngine(EngineConfig(accel=AccelOptions(attention="sdpa")))
    spec = ModelSpec(name="a", source=str(paths["model"]), resolution=64, accel=(("fuse_qkv", True),))
    resident, _ = processor.pipelines.get(spec)
    assert resident.accel.fuse_qkv and resident.accel.attention == "sdpa" and resident.accel.channels_last is False
    assert {type(p) for p in resident.text2img.unet.attn_processors.values()} == {FusedAttnProcessor2_0}

    eager = ModelSpec(name="b", source=str(paths["model"]), resolution=64, accel=(("attention", "eager"),))
    resident, _ = processor.pipelines.get(eager)
    assert {type(p) for p in resident.text2img.unet.attn_processors.values()} == {AttnProcessor}

    bad = ModelSpec(name="c", source=str(paths["model"]), resolution=64, accel=(("turbo", True),))
    with pytest.raises(ModelUnavailable, match="turbo"):
        processor.pipelines.get(bad)


@pytest.mark.skipif(not os.environ.get("RUN_COMPILE_TESTS"), reason="torch.compile on a CPU takes minutes")
def test_a_compiled_unet_and_decoder_keep_the_pixels_and_fill_the_cache(paths, plain, tmp_path: Path) -> None:  # noqa: ANN001
    options = AccelOptions(channels_last=False, compile=True, compile_cache_dir=str(tmp_path / "inductor"))
    assert_same_pixels(render(paths, options), plain["base"])
    assert any((tmp_path / "inductor").rglob("*"))
