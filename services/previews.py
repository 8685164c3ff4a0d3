"""Cheap previews of latents while they are denoised: no VAE, no extra weights.

Each family's VAE maps its 4 latent channels to colours almost linearly, so a fixed 4x3 matrix (plus a
bias) gives a small, recognisable picture at the latent's resolution (1/8 of the image's side) for the
cost of one tiny matrix product. The factors are the ones ComfyUI publishes for its "latent2rgb" previews
(comfy/latent_formats.py), fitted against the SD 1.x and SDXL VAEs; SD 2.x shares SD 1.x's VAE. They apply
to latents as diffusers holds them (already multiplied by the VAE's scaling factor). Mid-run latents still
carry noise, so early previews are grainy; they sharpen as the run goes on.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

# rgb[r] = sum over channels c of latent[c] * factors[c][r], + bias[r]; then mapped from [-1, 1] to [0, 255].
_SD1 = (
    ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
    (0.0, 0.0, 0.0),
)
_SDXL = (
    ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
    (0.1084, -0.0175, -0.0011),
)
LATENT_RGB: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]] = {
    "sd1": _SD1,
    "sd2": _SD1,
    "sdxl": _SDXL,
}
MAX_SIDE = 256  # a preview's long side at most (latents are 1/8 of the image's side in SD; scaled up to this)
JPEG_QUALITY = 70


def latents_to_rgb(latents: torch.Tensor, family: str) -> torch.Tensor | None:
    """(batch, 4, h, w) latents -> (batch, h, w, 3) uint8 on the CPU; None where the family has no factors."""
    known = LATENT_RGB.get(family)
    if known is None or latents.ndim != 4 or latents.shape[1] != len(known[0]):
        return None
    factors = torch.tensor(known[0], dtype=torch.float32, device=latents.device)
    bias = torch.tensor(known[1], dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float(), factors) + bias
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()


def preview_jpegs(latents: torch.Tensor, family: str, image_size: tuple[int, int]) -> list[bytes]:
    """One small JPEG per image of the batch, at most MAX_SIDE on its long side and never larger than the
    image itself (width, height); [] where the family has no factors."""
    rgb = latents_to_rgb(latents, family)
    if rgb is None:
        return []
    width, height = image_size
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    jpegs = []
    for pixels in rgb:
        image = Image.fromarray(pixels.numpy(), "RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        jpegs.append(buffer.getvalue())
    return jpegs
