"""The single-file writer is the exact inverse of diffusers' reader, also at the real models' sizes.

The real SD-1.5 and SDXL-base layouts are checked on the meta device (no weights, no memory): every
weight the writer places in the original layout comes back from diffusers' own conversion as the very
same tensor under its diffusers name, and diffusers' detector recognises the files as SD 1.x / SDXL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from devtools import singlefile
from devtools.devmodels import SHAPES

# stabilityai/stable-diffusion-xl-base-1.0's unet and text_encoder_2 configs (the parts that shape the weights).
SDXL_BASE_UNET = {
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
}
SDXL_BASE_TEXT_2 = CLIPTextConfig(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1280,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
)


def meta_unet(config: dict) -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**config)


@pytest.mark.parametrize(
    "config, detected",
    [pytest.param(SHAPES["full"].unet, "v1", id="sd15"), pytest.param(SDXL_BASE_UNET, None, id="sdxl")],
)
def test_the_unet_layout_round_trips_through_diffusers_reader(config: dict, detected: str | None) -> None:
    unet = meta_unet(config)
    state = unet.state_dict()
    original = singlefile._convert_unet(state, dict(unet.config))
    assert all(key.startswith("model.diffusion_model.") for key in original)
    back = convert_ldm_unet_checkpoint(original, dict(unet.config))
    assert back.keys() == state.keys()
    assert all(back[key] is state[key] for key in state)  # each weight back in its own place
    if detected:
        assert infer_diffusers_model_type(original) == detected


def test_the_vae_and_the_sdxl_text_encoders_round_trip_through_diffusers_reader() -> None:
    with torch.device("meta"):
        vae = AutoencoderKL(**SHAPES["full"].vae)
        text_2 = CLIPTextModelWithProjection(SDXL_BASE_TEXT_2)
    state = vae.state_dict()
    back = convert_ldm_vae_checkpoint(singlefile._convert_vae(state, dict(vae.config)), dict(vae.config))
    assert back.keys() == state.keys()
    assert all(back[key].shape == state[key].shape for key in state)

    state = text_2.state_dict()
    prefix = "conditioner.embedders.1.model."
    original = singlefile._convert_open_clip(state, prefix)
    back = convert_open_clip_checkpoint(text_2, original, prefix=prefix)
    assert back.keys() == state.keys() - {"text_model.embeddings.position_ids"}
    assert all(back[key].shape == state[key].shape for key in back)
    original |= singlefile._convert_unet(meta_unet(SDXL_BASE_UNET).state_dict(), SDXL_BASE_UNET)
    assert infer_diffusers_model_type(original) == "xl_base"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family"):
        singlefile.write_single_file(tmp_path, tmp_path / "x.safetensors", family="sd3")
    with pytest.raises(ValueError, match="safetensors"):
        singlefile.write_single_file(tmp_path, tmp_path / "x.ckpt")
    assert not list(tmp_path.iterdir())
