"""Source images of any size or mode, made ready for a model."""

from __future__ import annotations

from PIL import Image, ImageOps


def to_rgb(image: Image.Image) -> Image.Image:
    """RGBA, LA and palette images are put on white; grayscale and 16-bit images are widened."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def fit_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Scale so the longer side is `resolution`, keep the aspect ratio, round down to multiples of 8."""
    scale = resolution / max(width, height)
    return max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)


def prepare_source(image: Image.Image, resolution: int) -> Image.Image:
    target = fit_size(image.width, image.height, resolution)
    if image.format == "JPEG":
        image.draft("RGB", target)  # decode a huge JPEG at reduced size instead of in full
    return to_rgb(image).resize(target, Image.Resampling.LANCZOS)
