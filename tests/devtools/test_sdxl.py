"""The SDXL-shaped development checkpoint: SDXL's layout, built once."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.devmodels import MARKER_NAME
from devtools.sdxl import XL_SHAPES, build_xl_checkpoint, build_xl_lora


def test_the_tiny_sdxl_checkpoint_has_sdxl_layout_and_rebuilds_as_a_no_op(tmp_path: Path) -> None:
    assert build_xl_checkpoint(tmp_path / "ckpt", seed=1) is True
    assert build_xl_lora(tmp_path / "lora", seed=2) is True
    index = json.loads((tmp_path / "ckpt" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    unet = json.loads((tmp_path / "ckpt" / "unet" / "config.json").read_text())
    shape = XL_SHAPES["tiny"]
    assert unet["addition_embed_type"] == "text_time"
    assert unet["cross_attention_dim"] == shape.text_encoder["hidden_size"] + shape.text_encoder_2["hidden_size"]
    assert json.loads((tmp_path / "ckpt" / "vae" / "config.json").read_text())["force_upcast"] is True
    marker = (tmp_path / "ckpt" / MARKER_NAME).read_bytes()
    assert build_xl_checkpoint(tmp_path / "ckpt", seed=1) is False
    assert build_xl_lora(tmp_path / "lora", seed=2) is False
    assert (tmp_path / "ckpt" / MARKER_NAME).read_bytes() == marker
