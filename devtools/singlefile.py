"""Single-file ("original", Civitai-style) checkpoints made from a diffusers directory, for tests and benchmarks.

diffusers reads such files with ``from_single_file`` but ships no writer in the package (its repository
has ``scripts/convert_diffusers_to_original_stable_diffusion.py`` and ``..._sdxl.py``, hard-wired to
the real models' block counts). This module is the inverse of diffusers' own reader
(``diffusers.loaders.single_file_utils``: ``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``,
``convert_ldm_clip_checkpoint``, ``convert_open_clip_checkpoint``), driven by the component configs, so
it also fits the tiny development shapes. The mapping only renames keys, reshapes the VAE's attention
projections to the original 1x1 convolutions and, for SDXL's second text encoder, joins q, k and v
into one ``in_proj``: no value changes, so the file loads back to the very same weights.

Layouts written:

* ``sd1``: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE),
  ``cond_stage_model.transformer.text_model.*`` (CLIP text encoder).
* ``sdxl``: ``model.diffusion_model.*``, ``first_stage_model.*``,
  ``conditioner.embedders.0.transformer.text_model.*`` (CLIP ViT-L) and
  ``conditioner.embedders.1.model.*`` (OpenCLIP ViT-bigG layout).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["FAMILIES", "write_single_file"]

FAMILIES = ("sd1", "sdxl")

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _component(checkpoint_dir: Path, name: str) -> dict[str, torch.Tensor]:
    files = sorted((checkpoint_dir / name).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {checkpoint_dir / name}")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(load_file(path))
    return state


def _config(checkpoint_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((checkpoint_dir / name / "config.json").read_text())


def _rename(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for new, old in pairs:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def _unet_prefix_map(config: dict[str, Any]) -> dict[str, str]:
    """diffusers module prefixes -> original (LDM) ones, for this UNet's block layout."""
    per_level = config["layers_per_block"] + 1  # resnets per down level, plus its downsampler
    levels = len(config["block_out_channels"])
    mapping = dict(_UNET_TOP)
    for level in range(levels):
        for j in range(config["layers_per_block"]):
            block = 1 + level * per_level + j
            mapping[f"down_blocks.{level}.resnets.{j}"] = f"input_blocks.{block}.0"
            mapping[f"down_blocks.{level}.attentions.{j}"] = f"input_blocks.{block}.1"
        if level < levels - 1:
            mapping[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{(level + 1) * per_level}.0.op"
        has_attention = config["up_block_types"][level].startswith("CrossAttn")
        for j in range(per_level):
            block = level * per_level + j
            mapping[f"up_blocks.{level}.resnets.{j}"] = f"output_blocks.{block}.0"
            mapping[f"up_blocks.{level}.attentions.{j}"] = f"output_blocks.{block}.1"
        if level < levels - 1:
            last = level * per_level + per_level - 1
            mapping[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{last}.{2 if has_attention else 1}.conv"
    mapping["mid_block.resnets.0"] = "middle_block.0"
    mapping["mid_block.attentions.0"] = "middle_block.1"
    mapping["mid_block.resnets.1"] = "middle_block.2"
    return mapping


def _convert_unet(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    mapping = _unet_prefix_map(config)
    out = {}
    for key, value in state.items():
        prefix = max((p for p in mapping if key.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            raise KeyError(f"UNet weight {key!r} has no place in the original layout")
        rest = key[len(prefix) :]
        if ".resnets." in prefix:
            rest = _rename(rest, _RESNET)
        out["model.diffusion_model." + mapping[prefix] + rest] = value
    return out


def _convert_vae(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        for k in range(2):
            new = new.replace(f"mid_block.resnets.{k}.", f"mid.block_{k + 1}.")
        if "mid_block.attentions.0." in new:
            new = _rename(new.replace("mid_block.attentions.0.", "mid.attn_1."), _VAE_ATTENTION)
            if value.ndim == 2:  # the original attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        for level in range(levels):
            new = new.replace(f"encoder.down_blocks.{level}.resnets.", f"encoder.down.{level}.block.")
            new = new.replace(f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample.")
            original = levels - 1 - level  # the decoder's up blocks are numbered from the lowest resolution
            new = new.replace(f"decoder.up_blocks.{level}.resnets.", f"decoder.up.{original}.block.")
            new = new.replace(f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{original}.upsample.")
        out["first_stage_model." + new] = value
    return out


def _convert_clip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    # transformers 5 flattened CLIPTextModel (no "text_model." level); the original layout keeps it.
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): v for key, v in state.items()}


def _convert_open_clip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    state = {key.removeprefix("text_model."): value for key, value in state.items()}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("embeddings.position_ids", None)
    layers = sorted({int(key.split(".")[2]) for key in state if key.startswith("encoder.layers.")})
    for i in layers:
        ours, theirs = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{ours}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{theirs}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
            out[f"{theirs}attn.out_proj.{kind}"] = state.pop(f"{ours}self_attn.out_proj.{kind}")
            out[f"{theirs}ln_1.{kind}"] = state.pop(f"{ours}layer_norm1.{kind}")
            out[f"{theirs}ln_2.{kind}"] = state.pop(f"{ours}layer_norm2.{kind}")
            out[f"{theirs}mlp.c_fc.{kind}"] = state.pop(f"{ours}mlp.fc1.{kind}")
            out[f"{theirs}mlp.c_proj.{kind}"] = state.pop(f"{ours}mlp.fc2.{kind}")
    if state:
        raise KeyError(f"text encoder weights with no place in the OpenCLIP layout: {sorted(state)[:5]}")
    return out


def write_single_file(checkpoint_dir: Path, out_file: Path, *, family: str = "sd1") -> Path:
    """Write the diffusers checkpoint at ``checkpoint_dir`` as one original-layout ``.safetensors`` file.

    Load it with ``<Pipeline>.from_single_file(out_file, config=checkpoint_dir)`` (``config``: a directory
    whose component configs and tokenizers describe the file, so nothing is fetched from a hub).
    """
    checkpoint_dir, out_file = Path(checkpoint_dir), Path(out_file)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if out_file.suffix != ".safetensors":
        raise ValueError(f"out_file must end in .safetensors: {out_file}")
    state = _convert_unet(_component(checkpoint_dir, "unet"), _config(checkpoint_dir, "unet"))
    state |= _convert_vae(_component(checkpoint_dir, "vae"), _config(checkpoint_dir, "vae"))
    if family == "sd1":
        state |= _convert_clip(_component(checkpoint_dir, "text_encoder"), "cond_stage_model.transformer.")
    else:
        state |= _convert_clip(_component(checkpoint_dir, "text_encoder"), "conditioner.embedders.0.transformer.")
        state |= _convert_open_clip(_component(checkpoint_dir, "text_encoder_2"), "conditioner.embedders.1.model.")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.partial")
    save_file({key: value.contiguous() for key, value in state.items()}, tmp, metadata={"format": "pt"})
    tmp.replace(out_file)
    return out_file
