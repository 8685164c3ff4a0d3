"""The SDXL family through services/: load, LoRA, text-to-image, image-to-image and float16 decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from devtools.sdxl import XL_SHAPES, build_xl_checkpoint, build_xl_lora
from services.engine import DiffusersEngine, EngineConfig
from services.pngmeta import png_bytes, read_recipe
from services.prompts import encode_in_windows_xl, needs_windows
from services.types import GenerationRequest, ImageTask, LoraSpec, ModelSpec

RES = XL_SHAPES["tiny"].resolution

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def xl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("xl")
    build_xl_checkpoint(root / "ckpt", shape="tiny", seed=1)
    build_xl_lora(root / "lora", shape="tiny", seed=2, weight_name="lora.safetensors")
    return {"ckpt": str(root / "ckpt"), "lora": str(root / "lora")}


@pytest.fixture(scope="module")
def processor() -> DiffusersEngine:
    return DiffusersEngine(EngineConfig())


def spec(xl: dict[str, str], dtype: str = "auto") -> ModelSpec:
    return ModelSpec(name=f"xl-{dtype}", source=xl["ckpt"], family="sdxl", dtype=dtype, resolution=RES)


def run(processor: DiffusersEngine, request: GenerationRequest) -> list:
    outputs: list = []
    processor.generate(request, on_batch=outputs.extend)
    return sorted(outputs, key=lambda output: output.meta["index"])


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def items(count: int = 1, *, init: Image.Image | None = None, size: tuple[int, int] = (RES, RES)) -> list[ImageTask]:
    return [
        ImageTask(prompt=f"a cat {i}", seed=7 + i, width=size[0], height=size[1], init_image=init, meta={"index": i})
        for i in range(count)
    ]


def test_text_to_image_gives_pngs_of_the_asked_size_and_a_lora_changes_them(
    xl: dict[str, str], processor: DiffusersEngine
) -> None:
    base = run(processor, GenerationRequest(model=spec(xl), items=items(2), steps=3))
    for output in base:
        png = Image.open(io.BytesIO(png_bytes(output.image, output.recipe)))
        assert png.format == "PNG" and png.size == (RES, RES)
        assert pixels(png).std() > 5
    assert read_recipe(png_bytes(base[0].image, base[0].recipe))["model"] == "xl-auto"
    wide = run(processor, GenerationRequest(model=spec(xl), items=items(size=(96, 48)), steps=2))
    assert wide[0].image.size == (96, 48)

    lora = LoraSpec(name="xl-lora", source=xl["lora"], weight_name="lora.safetensors")
    with_lora = run(processor, GenerationRequest(model=spec(xl), items=items(2), steps=3, loras=(lora,)))
    assert np.abs(pixels(with_lora[0].image) - pixels(base[0].image)).mean() > 2
    again = run(processor, GenerationRequest(model=spec(xl), items=items(2), steps=3))
    assert np.array_equal(pixels(again[0].image), pixels(base[0].image))  # the adapter is off after its job
    assert processor.loras.loads == 1


def test_image_to_image_keeps_the_source_size_and_shares_the_modules(
    xl: dict[str, str], processor: DiffusersEngine
) -> None:
    source = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    (output,) = run(processor, GenerationRequest(model=spec(xl), items=items(init=source), steps=4, strength=0.5))
    assert output.image.size == (64, 48) and output.recipe.strength == 0.5
    resident, _ = processor.pipelines.get(spec(xl))
    assert resident.img2img.unet is resident.text2img.unet
    assert resident.img2img.text_encoder_2 is resident.text2img.text_encoder_2


def test_float16_decodes_in_float32_where_the_vae_asks_for_it(xl: dict[str, str]) -> None:
    """SDXL's VAE overflows in float16 (its config says force_upcast): the pipeline decodes in float32."""
    processor = DiffusersEngine(EngineConfig(device="cpu"))
    resident, _ = processor.pipelines.get(spec(xl, "float16"))
    assert resident.dtype == torch.float16 and resident.text2img.vae.config.force_upcast
    decoded: list[torch.dtype] = []
    hook = resident.text2img.vae.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].dtype))
    try:
        (text,) = run(processor, GenerationRequest(model=spec(xl, "float16"), items=items(), steps=2))
        source = Image.new("RGB", (RES, RES), (200, 40, 90))
        (image,) = run(processor, GenerationRequest(model=spec(xl, "float16"), items=items(init=source), steps=2))
    finally:
        hook.remove()
    assert decoded == [torch.float32, torch.float32]
    assert resident.text2img.vae.dtype == torch.float16  # cast back after decoding: the memory stays halved
    assert resident.text2img.unet.dtype == torch.float16
    assert text.recipe.dtype == "float16" and text.image.size == image.image.size == (RES, RES)
    full = run(DiffusersEngine(EngineConfig(device="cpu")), GenerationRequest(model=spec(xl), items=items(), steps=2))
    assert np.abs(pixels(text.image) - pixels(full[0].image)).mean() < 3  # float16 draws the float32 picture


LONG = ", ".join(f"a red fox number {n} in the snow" for n in range(12))  # well past 77 tokens


def test_a_short_prompt_encodes_exactly_as_diffusers_does(xl: dict[str, str], processor: DiffusersEngine) -> None:
    pipe = processor.pipelines.get(spec(xl))[0].text2img
    prompts, negative = ["a lighthouse at dusk", "a fox"], ["blurry", ""]
    with torch.inference_mode():
        ours = encode_in_windows_xl(pipe, prompts, negative)
        theirs = pipe.encode_prompt(prompts, device="cpu", negative_prompt=negative)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for name, expected in zip(names, theirs, strict=True):
        torch.testing.assert_close(ours[name], expected, rtol=0, atol=1e-6)


def items_of(*prompts: str) -> list[ImageTask]:
    return [ImageTask(prompt=prompt, seed=7, width=RES, height=RES, meta={"index": 0}) for prompt in prompts]


def test_tokens_after_the_77th_change_an_sdxl_image(xl: dict[str, str], processor: DiffusersEngine) -> None:
    pipe = processor.pipelines.get(spec(xl))[0].text2img
    ending_a, ending_b = LONG + ", oil painting of a castle", LONG + ", pencil sketch of a harbour"
    assert needs_windows(pipe.tokenizer_2, [ending_a])

    def truncated(prompt: str) -> np.ndarray:  # diffusers alone cuts both prompts to the same 77 tokens
        generator = torch.Generator("cpu").manual_seed(7)
        return pixels(pipe(prompt, num_inference_steps=2, generator=generator).images[0])

    assert np.array_equal(truncated(ending_a), truncated(ending_b))
    a, b = (
        pixels(run(processor, GenerationRequest(model=spec(xl), items=[item], steps=2))[0].image)
        for item in items_of(ending_a, ending_b)
    )
    assert (a != b).mean() > 0.2


def test_an_empty_negative_prompt_is_the_zeros_sdxl_was_trained_with(
    xl: dict[str, str], processor: DiffusersEngine
) -> None:
    pipe = processor.pipelines.get(spec(xl))[0].text2img
    assert pipe.config.force_zeros_for_empty_prompt
    with torch.inference_mode():
        ours = encode_in_windows_xl(pipe, ["a fox", "a cat"], ["", "blurry"], zero_empty_negatives=True)
        _, no_negative, _, no_negative_pooled = pipe.encode_prompt(["a fox"], device="cpu")
        _, blurry, _, blurry_pooled = pipe.encode_prompt(["a cat"], device="cpu", negative_prompt=["blurry"])
    assert not no_negative.any() and not no_negative_pooled.any()  # diffusers' zeros without a negative prompt
    torch.testing.assert_close(ours["negative_prompt_embeds"], torch.cat([no_negative, blurry]), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        ours["negative_pooled_prompt_embeds"], torch.cat([no_negative_pooled, blurry_pooled]), rtol=0, atol=1e-6
    )
    # Through the service an empty negative prompt draws what diffusers draws without one, batched or alone.
    generator = torch.Generator("cpu").manual_seed(7)
    theirs = pipe("a fox", num_inference_steps=2, guidance_scale=7.5, width=RES, height=RES, generator=[generator])
    theirs = pixels(theirs.images[0])
    mixed = [
        ImageTask(prompt="a fox", seed=7, width=RES, height=RES, meta={"index": 0}),
        ImageTask(prompt="a cat", negative_prompt="blurry", seed=8, width=RES, height=RES, meta={"index": 1}),
    ]
    alone, _ = run(processor, GenerationRequest(model=spec(xl), items=mixed, steps=2, batch_size=1))
    together, _ = run(processor, GenerationRequest(model=spec(xl), items=mixed, steps=2, batch_size=2))
    assert np.abs(pixels(alone.image) - theirs).max() <= 1
    assert np.abs(pixels(together.image) - pixels(alone.image)).max() <= 1
