"""Prompts longer than CLIP's 77 tokens are encoded in 75-token windows: every token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devtools.devmodels import build_checkpoint
from services.engine import DiffusersEngine, EngineConfig
from services.prompts import encode_in_windows, needs_windows, prompt_tokens
from services.types import GenerationRequest, ImageTask, ModelSpec

HEAD = ", ".join(f"a red fox number {n} in the snow" for n in range(12))  # well past 77 tokens


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiffusersEngine, ModelSpec]:
    root = tmp_path_factory.mktemp("models") / "a"
    build_checkpoint(root, shape="tiny", seed=1)
    processor = DiffusersEngine(EngineConfig())
    return processor, ModelSpec(name="a", source=str(root), resolution=64)


def run(processor: DiffusersEngine, spec: ModelSpec, prompts: list[str], batch_size: int = 4) -> list[np.ndarray]:
    items = [ImageTask(prompt=p, seed=40 + i, width=64, height=64, meta={"index": i}) for i, p in enumerate(prompts)]
    outputs: list = []
    processor.generate(
        GenerationRequest(model=spec, items=items, steps=3, batch_size=batch_size), on_batch=outputs.extend
    )
    return [np.asarray(o.image, dtype=np.int16) for o in sorted(outputs, key=lambda o: o.meta["index"])]


def test_a_prompt_that_fits_one_window_encodes_exactly_as_diffusers_does(setup) -> None:  # noqa: ANN001
    processor, spec = setup
    pipe = processor.pipelines.get(spec)[0].text2img
    prompts, negative = ["a lighthouse at dusk", "a fox"], ["blurry", ""]
    with torch.inference_mode():
        ours, ours_negative = encode_in_windows(pipe, prompts, negative)
        theirs, theirs_negative = pipe.encode_prompt(prompts, "cpu", 1, True, negative)
    assert ours.shape == theirs.shape == (2, 77, theirs.shape[-1])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_negative, theirs_negative, rtol=0, atol=1e-6)


def test_tokens_after_the_77th_change_the_image(setup) -> None:  # noqa: ANN001
    processor, spec = setup
    pipe = processor.pipelines.get(spec)[0].text2img
    ending_a, ending_b = HEAD + ", oil painting of a castle", HEAD + ", pencil sketch of a harbour"
    assert len(prompt_tokens(pipe.tokenizer, HEAD)) > 80 and needs_windows(pipe.tokenizer, [ending_a])

    # diffusers alone truncates at 77 tokens: the two prompts give the same image.
    def truncated(prompt: str) -> np.ndarray:
        generator = torch.Generator("cpu").manual_seed(40)
        image = pipe(prompt, num_inference_steps=3, width=64, height=64, generator=generator).images[0]
        return np.asarray(image, dtype=np.int16)

    assert np.array_equal(truncated(ending_a), truncated(ending_b))
    # The service reads every token: the endings show (the tiny random text encoder moves pixels a
    # little, but over much of the image; the truncated pair above is identical to the bit).
    a, b = run(processor, spec, [ending_a]) + run(processor, spec, [ending_b])
    assert np.abs(a - b).mean() > 0.3 and (a != b).mean() > 0.2


def test_a_long_and_a_short_prompt_give_the_same_pixels_batched_or_alone(setup) -> None:  # noqa: ANN001
    processor, spec = setup
    prompts = [HEAD + ", a castle", "a short prompt", HEAD + HEAD + ", a harbour"]
    together = run(processor, spec, prompts, batch_size=4)
    alone_seeded = []  # run() seeds image i with 40 + i: the same seeds, one image a run
    for index, prompt in enumerate(prompts):
        item = ImageTask(prompt=prompt, seed=40 + index, width=64, height=64, meta={"index": 0})
        outputs: list = []
        processor.generate(GenerationRequest(model=spec, items=[item], steps=3), on_batch=outputs.extend)
        alone_seeded.append(np.asarray(outputs[0].image, dtype=np.int16))
    for batched, single in zip(together, alone_seeded, strict=True):
        difference = np.abs(batched - single)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
