"""Latent previews: a fixed linear map per family, decoded to small JPEGs, no weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from services.previews import LATENT_RGB, latents_to_rgb, preview_jpegs


def test_each_channel_maps_to_its_published_colour() -> None:
    """A latent with one channel at 1 gives (factors[channel] + bias + 1) / 2 in every pixel."""
    for family in ("sd1", "sdxl"):
        factors, bias = LATENT_RGB[family]
        latents = torch.zeros(4, 4, 3, 5)
        for channel in range(4):
            latents[channel, channel] = 1.0
        rgb = latents_to_rgb(latents, family)
        assert rgb.shape == (4, 3, 5, 3) and rgb.dtype == torch.uint8
        for channel in range(4):
            expected = [round(min(max((factors[channel][c] + bias[c] + 1) / 2, 0), 1) * 255) for c in range(3)]
            assert rgb[channel, 1, 2].tolist() == expected


def test_sd2_shares_sd1s_vae_and_values_are_clamped() -> None:
    latents = torch.randn(1, 4, 8, 8) * 50  # far outside [-1, 1] after the projection
    sd1, sd2 = latents_to_rgb(latents, "sd1"), latents_to_rgb(latents, "sd2")
    assert torch.equal(sd1, sd2)
    assert set(np.unique(sd1.numpy())) >= {0, 255}


def test_half_precision_latents_give_the_same_picture() -> None:
    latents = torch.randn(2, 4, 8, 8)
    assert (latents_to_rgb(latents.half(), "sd1").int() - latents_to_rgb(latents, "sd1").int()).abs().max() <= 1


def test_unknown_families_and_shapes_give_no_preview() -> None:
    assert latents_to_rgb(torch.zeros(1, 4, 8, 8), "flux") is None
    assert latents_to_rgb(torch.zeros(1, 16, 8, 8), "sd1") is None
    assert preview_jpegs(torch.zeros(1, 16, 8, 8), "sd1", (64, 64)) == []


@pytest.mark.parametrize(
    ("latent", "image", "preview"),
    [((8, 8), (64, 64), (64, 64)), ((64, 96), (768, 512), (256, 171)), ((128, 128), (1024, 1024), (256, 256))],
)
def test_jpegs_are_small_decodable_and_never_larger_than_the_image(latent, image, preview) -> None:  # noqa: ANN001
    """Scaled from the latent's size to at most 256 px on the long side, never past the image's own size."""
    height, width = latent
    jpegs = preview_jpegs(torch.randn(2, 4, height, width), "sd1", image)
    assert len(jpegs) == 2
    for data in jpegs:
        decoded = Image.open(io.BytesIO(data))
        assert decoded.format == "JPEG" and decoded.size == preview
        assert len(data) < 40_000


def test_the_preview_follows_the_latents_colour() -> None:
    """A latent that the SD 1.x VAE decodes as blue-ish (channel 4 negative) previews blue."""
    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 3] = -1.5
    pixels = np.asarray(Image.open(io.BytesIO(preview_jpegs(latents, "sd1", (64, 64))[0])).convert("RGB"), dtype=int)
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
    assert blue > red + 60 and blue > green + 60
