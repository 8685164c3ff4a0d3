"""Offline development checkpoints shaped like Stable Diffusion XL.

The same idea as ``devtools.devmodels`` for the SDXL family: a UNet with SDXL's extra conditioning
(``addition_embed_type="text_time"``: the pooled text embedding plus original size, crop and target
size), two text encoders (``CLIPTextModel`` and ``CLIPTextModelWithProjection``, whose penultimate
hidden states are concatenated for cross-attention) with two offline tokenizers, an ``AutoencoderKL``
with SDXL's ``force_upcast`` and scaling factor, and SDXL's Euler scheduler; random weights, written
with ``save_pretrained`` and read back with ``StableDiffusionXLPipeline.from_pretrained``.

Shapes:

* ``tiny``: 64x64 native. On a 2-core CPU under a load average of ~8: one image at 4 steps takes 0.14
  CPU-seconds with 1 torch thread (0.8-2 with 2 threads, whose OpenMP spinning a busy machine punishes);
  a build 0.35 CPU-seconds. The second text encoder is wider than the first, as in SDXL (768 and 1280):
  single-file loading tells the two apart by width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from devtools.devmodels import (
    FORMAT_VERSION,
    build_atomically,
    build_tokenizer,
    lora_config,
    lora_state_dict,
    text_encoder_config,
    vae_config,
)

__all__ = ["XL_SHAPES", "XlShape", "build_xl_checkpoint", "build_xl_lora", "build_xl_pipeline"]

#: SDXL's VAE latent scale (stabilityai/stable-diffusion-xl-base-1.0, vae/config.json).
XL_SCALING_FACTOR = 0.13025
#: Bump when what an SDXL build writes changes (with devmodels.FORMAT_VERSION in the marker too).
XL_FORMAT_VERSION = 2
#: Added time ids per image: original size (2), crop top-left (2), target size (2).
TIME_IDS = 6


@dataclass(frozen=True)
class XlShape:
    """Configs of one SDXL-shaped development checkpoint; ``resolution`` is its native image size."""

    name: str
    resolution: int
    unet: dict[str, Any] = field(repr=False)
    vae: dict[str, Any] = field(repr=False)
    text_encoder: dict[str, Any] = field(repr=False)
    text_encoder_2: dict[str, Any] = field(repr=False)


def _text(*, hidden: int, layers: int, heads: int, act: str) -> dict[str, Any]:
    return {
        "vocab_size": None,  # the offline tokenizer's
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "projection_dim": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 77,
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
    }


def _xl_unet(
    channels: tuple[int, ...], *, heads: tuple[int, ...], cross_dim: int, pooled_dim: int, time_dim: int, sample: int
) -> dict[str, Any]:
    # As SDXL-base: no attention at the highest resolution, linear projections in the transformers,
    # and the pooled embedding of the second text encoder plus the six time ids as extra conditioning.
    attention = (False,) + (True,) * (len(channels) - 1)
    return {
        "sample_size": sample,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": channels,
        "layers_per_block": 1,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        "up_block_types": tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        "attention_head_dim": heads,
        "transformer_layers_per_block": tuple(1 for _ in channels),
        "cross_attention_dim": cross_dim,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": pooled_dim + TIME_IDS * time_dim,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


XL_SHAPES: dict[str, XlShape] = {
    "tiny": XlShape(
        name="tiny",
        resolution=64,
        unet=_xl_unet((32, 64), heads=(2, 4), cross_dim=32 + 48, pooled_dim=48, time_dim=8, sample=32),
        vae={
            **vae_config((32, 64), layers=1, sample=64),
            "scaling_factor": XL_SCALING_FACTOR,
            "force_upcast": True,
        },
        text_encoder=_text(hidden=32, layers=2, heads=4, act="quick_gelu"),
        # Wider than the first, as in SDXL (768 and 1280): single-file loading tells the two apart by width.
        text_encoder_2=_text(hidden=48, layers=2, heads=4, act="gelu"),
    ),
}

#: SDXL-base's scheduler config (scheduler/scheduler_config.json of stable-diffusion-xl-base-1.0).
XL_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}


def _xl_shape(shape: str) -> XlShape:
    try:
        return XL_SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown SDXL devmodel shape {shape!r}; expected one of {sorted(XL_SHAPES)}") from None


def build_xl_pipeline(shape: str = "tiny", *, seed: int = 0) -> StableDiffusionXLPipeline:
    """An in-memory SDXL-shaped pipeline with random weights seeded by ``seed`` (fp32, CPU)."""
    spec = _xl_shape(shape)
    tokenizer, tokenizer_2 = build_tokenizer(), build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**spec.unet)
        vae = AutoencoderKL(**spec.vae)
        text_encoder = CLIPTextModel(text_encoder_config(spec.text_encoder, tokenizer))
        text_encoder_2 = CLIPTextModelWithProjection(text_encoder_config(spec.text_encoder_2, tokenizer_2))
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.to(torch.float32).eval(),
        text_encoder_2=text_encoder_2.to(torch.float32).eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(**XL_SCHEDULER_CONFIG),
        add_watermarker=False,
    )


def build_xl_checkpoint(out_dir: Path, *, shape: str = "tiny", seed: int = 0) -> bool:
    """Build a random-weight SDXL-shaped checkpoint into ``out_dir`` (diffusers layout, safetensors).

    Load it with ``StableDiffusionXLPipeline.from_pretrained(out_dir, use_safetensors=True)``.
    Returns False (touching nothing) when ``out_dir`` already holds this exact build.
    """
    marker = {
        "kind": "sdxl-checkpoint",
        "shape": _xl_shape(shape).name,
        "seed": seed,
        "format": FORMAT_VERSION,
        "xl_format": XL_FORMAT_VERSION,
    }

    def write(tmp: Path) -> None:
        build_xl_pipeline(shape, seed=seed).save_pretrained(tmp, safe_serialization=True)

    return build_atomically(Path(out_dir), marker, write)


def build_xl_lora(
    out_dir: Path,
    *,
    shape: str = "tiny",
    seed: int = 0,
    weight_name: str = "pytorch_lora_weights.safetensors",
    rank: int = 4,
) -> bool:
    """Build a random UNet LoRA for the SDXL shape ``shape`` into ``out_dir / weight_name``.

    Loads with ``pipe.load_lora_weights(out_dir, weight_name=weight_name, adapter_name=...)`` on an
    SDXL pipeline and visibly changes its images at scale 1.0. Returns False when already built.
    """
    spec = _xl_shape(shape)
    if not weight_name.endswith(".safetensors") or Path(weight_name).name != weight_name:
        raise ValueError(f"weight_name must be a plain file name ending in .safetensors: {weight_name!r}")
    marker = {
        "kind": "sdxl-lora",
        "shape": spec.name,
        "seed": seed,
        "rank": rank,
        "weight_name": weight_name,
        "format": FORMAT_VERSION,
        "xl_format": XL_FORMAT_VERSION,
    }

    def write(tmp: Path) -> None:
        StableDiffusionXLPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=lora_state_dict(spec.unet, seed=seed, rank=rank),
            weight_name=weight_name,
            safe_serialization=True,
            unet_lora_adapter_metadata=lora_config(rank).to_dict(),
        )

    return build_atomically(Path(out_dir), marker, write)
