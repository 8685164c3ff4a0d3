"""Development checkpoints and LoRAs load through the real diffusers code paths and behave."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextModel

from devtools import devmodels
from devtools.devmodels import MARKER_NAME, SHAPES, build_checkpoint, build_lora, build_tokenizer

PROMPT = "a photo of a cat riding a horse"
STEPS = 4
RES = SHAPES["tiny"].resolution


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("devmodels")
    paths = {
        "ckpt": root / "ckpt",
        "ckpt_seed1": root / "ckpt-seed1",
        "lora_a": root / "lora-a",
        "lora_b": root / "lora-b",
    }
    assert build_checkpoint(paths["ckpt"], shape="tiny", seed=0) is True
    assert build_checkpoint(paths["ckpt_seed1"], shape="tiny", seed=1) is True
    assert build_lora(paths["lora_a"], shape="tiny", seed=1) is True
    assert build_lora(paths["lora_b"], shape="tiny", seed=2, weight_name="b.safetensors") is True
    return paths


def _load(path: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(path, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def pipe(built: dict[str, Path]) -> StableDiffusionPipeline:
    """A freshly loaded pipeline (LoRA tests mutate its UNet)."""
    return _load(built["ckpt"])


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _render(pipe: StableDiffusionPipeline, seed: int = 0) -> np.ndarray:
    out = pipe(
        PROMPT,
        num_inference_steps=STEPS,
        height=RES,
        width=RES,
        generator=torch.Generator().manual_seed(seed),
    )
    return _pixels(out.images[0])


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def test_checkpoint_loads_and_renders(built: dict[str, Path], pipe: StableDiffusionPipeline) -> None:
    assert json.loads((built["ckpt"] / MARKER_NAME).read_text())["shape"] == "tiny"
    assert pipe.text_encoder.dtype == torch.float32
    assert pipe.vae_scale_factor == SHAPES["tiny"].vae_scale_factor
    image = pipe(PROMPT, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)).images[0]
    assert isinstance(image, Image.Image)
    assert image.size == (RES, RES)  # the unet's native size is the default
    px = _pixels(image)
    assert not np.isnan(px).any()
    assert px.std() > 5
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 100


def test_seeds_are_deterministic(pipe: StableDiffusionPipeline) -> None:
    a, again, other = _render(pipe, 7), _render(pipe, 7), _render(pipe, 8)
    assert np.array_equal(a, again)
    assert _mean_diff(a, other) > 2


def test_lora_adapters(built: dict[str, Path], pipe: StableDiffusionPipeline) -> None:
    base = _render(pipe)
    pipe.load_lora_weights(built["lora_a"], weight_name="pytorch_lora_weights.safetensors", adapter_name="a")
    pipe.set_adapters(["a"], adapter_weights=[1.0])
    with_a = _render(pipe)
    assert not np.isnan(with_a).any() and with_a.std() > 5
    assert _mean_diff(with_a, base) > 2

    pipe.set_adapters(["a"], adapter_weights=[0.0])
    assert _max_diff(_render(pipe), base) <= 1

    pipe.set_adapters(["a"], adapter_weights=[1.0])
    pipe.disable_lora()
    assert _max_diff(_render(pipe), base) <= 1
    pipe.enable_lora()
    assert _max_diff(_render(pipe), with_a) <= 1

    pipe.load_lora_weights(built["lora_b"], weight_name="b.safetensors", adapter_name="b")
    pipe.set_adapters(["b"], adapter_weights=[1.0])
    with_b = _render(pipe)
    pipe.set_adapters(["a", "b"], adapter_weights=[1.0, 1.0])
    with_ab = _render(pipe)
    assert not np.isnan(with_ab).any()
    assert _mean_diff(with_b, base) > 2
    assert _mean_diff(with_ab, with_a) > 2
    assert _mean_diff(with_ab, with_b) > 2
    assert _mean_diff(with_a, with_b) > 2


def _snapshot(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*"))}


def test_rebuild_is_a_no_op(built: dict[str, Path]) -> None:
    before = {name: _snapshot(path) for name, path in built.items()}
    assert build_checkpoint(built["ckpt"], shape="tiny", seed=0) is False
    assert build_checkpoint(built["ckpt_seed1"], shape="tiny", seed=1) is False
    assert build_lora(built["lora_a"], shape="tiny", seed=1) is False
    assert build_lora(built["lora_b"], shape="tiny", seed=2, weight_name="b.safetensors") is False
    assert {name: _snapshot(path) for name, path in built.items()} == before
    # No temporary directories were left beside the builds.
    assert sorted(p.name for p in built["ckpt"].parent.iterdir()) == sorted(p.name for p in built.values())


def test_different_checkpoint_seeds_differ(built: dict[str, Path], pipe: StableDiffusionPipeline) -> None:
    other = _load(built["ckpt_seed1"])
    assert _mean_diff(_render(pipe), _render(other)) > 2


def test_img2img_shares_components(pipe: StableDiffusionPipeline) -> None:
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    init = Image.fromarray(np.random.default_rng(0).integers(0, 256, (RES, RES, 3), dtype=np.uint8))
    out = img2img(
        PROMPT,
        image=init,
        strength=0.5,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (RES, RES)
    px = _pixels(out)
    assert not np.isnan(px).any() and px.std() > 5


def test_rebuild_replaces_and_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "lora"
    assert build_lora(target, seed=1) is True
    first = (target / "pytorch_lora_weights.safetensors").read_bytes()
    assert build_lora(target, seed=2) is True  # a different build replaces it
    assert (target / "pytorch_lora_weights.safetensors").read_bytes() != first
    assert json.loads((target / MARKER_NAME).read_text())["seed"] == 2

    class Boom(RuntimeError):
        pass

    class HalfWriter:
        def save_pretrained(self, out_dir: Path, **kwargs: object) -> None:
            (Path(out_dir) / "model_index.json").write_text("{}")
            raise Boom

    monkeypatch.setattr(devmodels, "build_pipeline", lambda *a, **k: HalfWriter())
    with pytest.raises(Boom):
        build_checkpoint(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora"]  # no half checkpoint, no temp dirs


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = devmodels.build_pipeline("tiny", seed=3)
    assert torch.equal(torch.rand(3), expected)  # building does not consume the global RNG
    second = devmodels.build_pipeline("tiny", seed=3)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_checkpoint(tmp_path / "x", shape="huge")
    with pytest.raises(ValueError):
        build_lora(tmp_path / "x", weight_name="lora.bin")
    assert not (tmp_path / "x").exists()


def test_tokenizer_is_clip_like() -> None:
    tok = build_tokenizer()
    ids = tok(PROMPT, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert tok.model_max_length == 77 and len(ids) == 77
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids and max(ids) < len(tok)
    assert tok.decode(tok("A photo of a cat!").input_ids, skip_special_tokens=True) == "a photo of a cat !"
    long = tok("x " * 200, truncation=True, max_length=77).input_ids
    assert len(long) == 77


def test_full_shape_is_sd15() -> None:
    shape = SHAPES["full"]
    assert shape.resolution == 512 and shape.vae_scale_factor == 8
    with torch.device("meta"):
        unet = UNet2DConditionModel(**shape.unet)
        text = CLIPTextModel(devmodels._text_encoder_config(shape, build_tokenizer()))
    # Parameter counts of runwayml/stable-diffusion-v1-5's unet and text_encoder.
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in text.parameters()) == 123_060_480
    for each in SHAPES.values():
        assert each.unet["sample_size"] * each.vae_scale_factor == each.resolution
