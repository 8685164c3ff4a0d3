"""Known accelerations of a loaded pipeline, as options: worker-wide from the environment, per model
from `DLModel.metadata["accel"]`.

- attention: "sdpa" (torch's scaled_dot_product_attention, the default) or "eager" (plain matmuls).
- channels_last: UNet and VAE weights in NHWC, which cuDNN convolutions prefer ("auto": on CUDA).
- fuse_qkv: one matmul for the q, k and v projections of each attention (UNet and VAE). A LoRA
  adapts q, k and v separately, so the UNet is unfused for a job with LoRAs and fused again after.
- compile: torch.compile of the UNet and the VAE decoder, warmed up at the model's resolution when it
  is loaded; inductor's cache goes to `compile_cache_dir` so a restarted worker reuses its kernels.

Each keeps the same pixels within a small tolerance (tests/services/test_accel.py states it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

logger = logging.getLogger(__name__)

ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class AccelOptions:
    attention: str = "sdpa"
    channels_last: bool | None = None  # None: on where the device is CUDA
    fuse_qkv: bool = False
    compile: bool = False
    compile_cache_dir: str = ""


def accel_options(base: AccelOptions, overrides: dict[str, Any] | None) -> AccelOptions:
    """The worker's options with a model's overrides applied; unknown names or bad values raise ValueError."""
    if not overrides:
        return base
    known = {field.name for field in fields(AccelOptions)} - {"compile_cache_dir"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"Unknown acceleration options {unknown}; known: {sorted(known)}.")
    if "attention" in overrides and overrides["attention"] not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {overrides['attention']!r}.")
    for name in ("channels_last", "fuse_qkv", "compile"):
        if name in overrides and not isinstance(overrides[name], bool):
            raise ValueError(f"{name} must be true or false, got {overrides[name]!r}.")
    return replace(base, **overrides)


def accel_apply(pipe: Any, options: AccelOptions) -> None:
    """Apply `options` to a freshly loaded Stable Diffusion pipeline, in place."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processor = AttnProcessor2_0 if options.attention == "sdpa" else AttnProcessor
    pipe.unet.set_attn_processor(processor())
    pipe.vae.set_attn_processor(processor())
    if options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.fuse_qkv:
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    if options.compile:
        if options.compile_cache_dir:
            # Inductor reads this when it first compiles; FX graphs and kernels land there and a
            # restarted worker loads them instead of compiling again.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = options.compile_cache_dir
        pipe.unet.compile()
        pipe.vae.decoder.compile()


@contextlib.contextmanager
def lora_compatible(pipe: Any, options: AccelOptions, *, with_loras: bool) -> Iterator[None]:
    """A fused UNet would bypass a LoRA's q/k/v layers: unfuse it for the job, fuse it again after."""
    if not (options.fuse_qkv and with_loras):
        yield
        return
    pipe.unet.unfuse_qkv_projections()
    try:
        yield
    finally:
        pipe.unet.fuse_qkv_projections()
