"""Offline development checkpoints shaped like Stable Diffusion 1.x.

The machines that build and test this project reach no model hub, so this module builds
Stable-Diffusion-1.x-shaped pipelines (UNet + VAE + CLIP text encoder + an offline CLIP tokenizer +
SD-1.5's PNDM scheduler) and LoRA files from configs with random weights. They are written with
``save_pretrained`` / ``save_lora_weights`` and read back through the same ``from_pretrained`` /
``load_lora_weights`` code paths that real checkpoints use.

Shapes:

* ``tiny``: 64x64 native. Measured on a 2-core CPU (torch 2.13 CPU build, idle machine): one image
  at 4 steps ~0.12 s (0.17 s with 1 thread); checkpoint build ~0.3 s, a LoRA ~0.06 s.
* ``small``: 128x128 native. One image at 20 steps ~0.65-0.7 s (~1.0 s with 1 thread); build ~0.1 s.
  Both have attention only below the highest resolution level: CPU SDPA at 32x32 tokens dominated.
  On a busy 2-core machine torch's 2 OpenMP threads slow down 5-25x; 1 thread degrades gracefully.
* ``full``: the real SD-1.5 shape (UNet 320/640/1280/1280, VAE 128/256/512/512, CLIP ViT-L/14 text
  encoder; 859.5M + 83.7M + 123.1M parameters), 512x512 native. Random weights cost the same compute
  as the real model: GPU timings only. On this CPU: build ~27 s, 4.3 GB on disk, ~5.5 GB peak RSS,
  ~32 s for one 512x512 step.

Builds are idempotent (a ``devmodel.json`` marker records what was built) and atomic (built in a
temporary directory beside the target, then renamed into place).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

__all__ = [
    "FORMAT_VERSION",
    "LORA_TARGET_MODULES",
    "MARKER_NAME",
    "SHAPES",
    "Shape",
    "build_checkpoint",
    "build_lora",
    "build_tokenizer",
    "build_atomically",
    "lora_config",
    "lora_state_dict",
    "text_encoder_config",
    "vae_config",
]

#: Bump when what a build writes changes, so existing builds are rebuilt.
FORMAT_VERSION = 1
#: Marker file written (last) into every build directory.
MARKER_NAME = "devmodel.json"
#: The attention projections that LoRAs target (as in diffusers' SD LoRA training scripts).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
#: Relative size of a LoRA update: the per-entry std of ``B @ A * alpha / r`` over that of the base
#: weight (default torch Linear init). 2.0 changes tiny/small images by ~6-12/255 on average.
LORA_RELATIVE_STRENGTH = 2.0

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
# Words that get whole-word BPE merges, so common prompts tokenize to a few tokens.
_MERGE_WORDS = (
    "an", "the", "of", "in", "on", "with", "and", "photo", "cat", "dog", "astronaut", "riding",
    "horse", "painting", "portrait", "landscape", "mountain", "city", "red", "blue",
)  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """Configs of one development-checkpoint shape; ``resolution`` is its native image size."""

    name: str
    resolution: int
    unet: dict[str, Any] = field(repr=False)
    vae: dict[str, Any] = field(repr=False)
    text_encoder: dict[str, Any] = field(repr=False)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel along one side."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)


def _unet_config(
    channels: tuple[int, ...],
    *,
    attention: tuple[bool, ...],
    layers: int,
    cross_dim: int,
    heads: int,
    sample: int,
) -> dict[str, Any]:
    # ``attention``: which resolution levels (highest first) have transformer blocks. SD-1.x has them
    # on all but the lowest; the CPU shapes skip the highest, where CPU attention costs the most.
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return {
        "sample_size": sample,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": down,
        "up_block_types": up,
        "cross_attention_dim": cross_dim,
        # diffusers' historical misnomer: for UNet2DConditionModel this is the number of heads.
        "attention_head_dim": heads,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
    }


def vae_config(channels: tuple[int, ...], *, layers: int, sample: int) -> dict[str, Any]:
    n = len(channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
        "act_fn": "silu",
        "norm_num_groups": 32,
        "sample_size": sample,
        "scaling_factor": 0.18215,
    }


def _text_config(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    vocab_size: int | None,
) -> dict[str, Any]:
    # vocab_size None: exactly the offline tokenizer's vocabulary.
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "projection_dim": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": MODEL_MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
    }


SHAPES: dict[str, Shape] = {
    "tiny": Shape(
        name="tiny",
        resolution=64,
        unet=_unet_config((32, 64), attention=(False, True), layers=1, cross_dim=32, heads=2, sample=32),
        vae=vae_config((32, 64), layers=1, sample=64),
        text_encoder=_text_config(hidden=32, intermediate=64, layers=2, heads=4, vocab_size=None),
    ),
    "small": Shape(
        name="small",
        resolution=128,
        unet=_unet_config(
            (32, 64, 128),
            attention=(False, True, True),
            layers=1,
            cross_dim=128,
            heads=4,
            sample=32,
        ),
        vae=vae_config((32, 64, 64), layers=1, sample=128),
        text_encoder=_text_config(hidden=128, intermediate=256, layers=4, heads=4, vocab_size=None),
    ),
    # Exactly runwayml/stable-diffusion-v1-5's configs (weights random).
    "full": Shape(
        name="full",
        resolution=512,
        unet=_unet_config(
            (320, 640, 1280, 1280),
            attention=(True, True, True, False),
            layers=2,
            cross_dim=768,
            heads=8,
            sample=64,
        ),
        vae=vae_config((128, 256, 512, 512), layers=2, sample=512),
        text_encoder=_text_config(hidden=768, intermediate=3072, layers=12, heads=12, vocab_size=49408),
    ),
}

#: SD-1.5's scheduler config (scheduler/scheduler_config.json of the v1-5 repo).
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


# --------------------------------------------------------------------------------------------------
# Tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    seen = set(tokens)
    for word in _MERGE_WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if merged not in seen:
                seen.add(merged)
                tokens.append(merged)
                merges.append((left, right))
            left = merged
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_tokenizer() -> CLIPTokenizer:
    """An offline CLIP BPE tokenizer: every byte (and its ``</w>`` form), a few whole-word merges.

    Any text tokenizes (no unknown tokens); ids are ``< len(tokenizer)``; ``<|endoftext|>`` pads.
    """
    vocab, merges = _vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
    )


# --------------------------------------------------------------------------------------------------
# Build helpers


def shape_named(shape: str) -> Shape:
    try:
        return SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown devmodel shape {shape!r}; expected one of {sorted(SHAPES)}") from None


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``out_dir``; on success it replaces ``out_dir`` by rename."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if old is not None and not out_dir.exists():
                os.rename(old / "x", out_dir)  # put the previous build back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_atomically(out_dir: Path, marker: dict[str, Any], write: Callable[[Path], None]) -> bool:
    out_dir = Path(out_dir)
    if read_marker(out_dir) == marker:
        return False
    try:
        with _atomic_dir(out_dir) as tmp:
            write(tmp)
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    except OSError:
        # Lost a race with a concurrent identical build: theirs is as good as ours.
        if read_marker(out_dir) == marker:
            return False
        raise
    return True


def _text_encoder_config(shape: Shape, tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return text_encoder_config(shape.text_encoder, tokenizer)


def text_encoder_config(config: dict[str, Any], tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """A CLIP text config from ``config``, its token ids (and, when None, its vocabulary size) from ``tokenizer``."""
    kwargs = dict(config)
    if kwargs["vocab_size"] is None:
        kwargs["vocab_size"] = len(tokenizer)
    return CLIPTextConfig(
        **kwargs,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_pipeline(shape: str = "tiny", *, seed: int = 0) -> StableDiffusionPipeline:
    """An in-memory SD-1.x-shaped pipeline with random weights seeded by ``seed`` (fp32, CPU)."""
    spec = shape_named(shape)
    tokenizer = build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**spec.unet)
        vae = AutoencoderKL(**spec.vae)
        text_encoder = CLIPTextModel(_text_encoder_config(spec, tokenizer))
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.to(torch.float32).eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=PNDMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_checkpoint(out_dir: Path, *, shape: str = "tiny", seed: int = 0) -> bool:
    """Build a random-weight SD-1.x-shaped checkpoint into ``out_dir`` (diffusers layout, safetensors).

    Load it with ``StableDiffusionPipeline.from_pretrained(out_dir, use_safetensors=True)``.
    Returns False (touching nothing) when ``out_dir`` already holds this exact build.
    """
    marker = {"kind": "checkpoint", "shape": shape_named(shape).name, "seed": seed, "format": FORMAT_VERSION}

    def write(tmp: Path) -> None:
        build_pipeline(shape, seed=seed).save_pretrained(tmp, safe_serialization=True)

    return build_atomically(Path(out_dir), marker, write)


def lora_config(rank: int) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGET_MODULES))


def lora_state_dict(unet_config: dict[str, Any], *, seed: int, rank: int) -> dict[str, torch.Tensor]:
    """Random LoRA weights (diffusers layout, no ``unet.`` prefix) for a UNet built from ``unet_config``."""
    # The UNet is only needed for module names and shapes: build it on the meta device (no memory,
    # no init cost, also for "full"), let peft attach the LoRA layers, then make real tensors.
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config)
    unet.add_adapter(lora_config(rank))
    shapes = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(unet).items()}
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, size in sorted(shapes.items()):
        if ".lora_A." in key:
            # torch's default Linear init (kaiming_uniform, a=sqrt(5)) has entries U(-1/sqrt(in), 1/sqrt(in)).
            bound = 1.0 / math.sqrt(size[1])
            state[key] = (torch.rand(size, generator=gen) * 2 - 1) * bound
        elif ".lora_B." in key:
            # Var((B @ A)_ij) = r * std_B^2 * Var(A) and Var(A) equals the base weight's per-entry variance.
            state[key] = torch.randn(size, generator=gen) * (LORA_RELATIVE_STRENGTH / math.sqrt(rank))
        else:
            raise AssertionError(f"unexpected LoRA key {key}")
    return convert_state_dict_to_diffusers(state)


def build_lora(
    out_dir: Path,
    *,
    shape: str = "tiny",
    seed: int = 0,
    weight_name: str = "pytorch_lora_weights.safetensors",
    rank: int = 4,
) -> bool:
    """Build a random LoRA for the UNet of ``shape`` into ``out_dir / weight_name``.

    Loads with ``pipe.load_lora_weights(out_dir, weight_name=weight_name, adapter_name=...)`` and
    visibly changes images at scale 1.0. Returns False (touching nothing) when already built.
    """
    spec = shape_named(shape)
    if not weight_name.endswith(".safetensors") or Path(weight_name).name != weight_name:
        raise ValueError(f"weight_name must be a plain file name ending in .safetensors: {weight_name!r}")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    marker = {
        "kind": "lora",
        "shape": spec.name,
        "seed": seed,
        "rank": rank,
        "weight_name": weight_name,
        "format": FORMAT_VERSION,
    }

    def write(tmp: Path) -> None:
        # Saved as the adapter metadata so loaders rebuild exactly this LoraConfig (alpha == rank).
        metadata = lora_config(rank).to_dict()
        StableDiffusionPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=lora_state_dict(spec.unet, seed=seed, rank=rank),
            weight_name=weight_name,
            safe_serialization=True,
            unet_lora_adapter_metadata=metadata,
        )

    return build_atomically(Path(out_dir), marker, write)
