"""Draws the sample dataset (our own images, made with Pillow) and writes fixtures/datasets.json.

Run from the repository root: python scripts/make_sample_dataset.py. The images vary in size, aspect
ratio and mode (RGB, RGBA, palette, grayscale) so that random diffusion meets what users upload.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "fixtures" / "media"
FOLDER = "datasets/sample"

SPECS = [
    ("sunset-hills", (192, 128), "RGB"),
    ("night-city", (160, 160), "RGB"),
    ("forest-lake", (128, 192), "RGB"),
    ("desert-dunes", (256, 144), "RGB"),
    ("glass-orbs", (160, 120), "RGBA"),
    ("pixel-flowers", (96, 96), "P"),
    ("charcoal-sketch", (144, 176), "L"),
    ("ocean-waves", (224, 128), "RGB"),
    ("snow-peaks", (128, 128), "RGB"),
    ("autumn-path", (120, 160), "RGB"),
]


def draw(name: str, size: tuple[int, int], mode: str, rng: random.Random) -> Image.Image:
    width, height = size
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", size)
    pixels = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        pixels.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    for _ in range(rng.randrange(4, 9)):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(6, max(8, width // 4))
        color = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(["ellipse", "rectangle", "polygon"])
        if shape == "polygon":
            pixels.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=color)
        else:
            getattr(pixels, shape)([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    if mode == "RGBA":
        alpha = Image.new("L", size, 0)
        ImageDraw.Draw(alpha).ellipse([8, 8, width - 8, height - 8], fill=255)
        image.putalpha(alpha)
        return image
    if mode == "P":
        return image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return image.convert(mode)


def main() -> None:
    rng = random.Random(20261122)
    (MEDIA / FOLDER).mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "model": "dataset_domain.dataset",
            "fields": {
                "name": "sample",
                "description": "Ten small drawings in several sizes and modes.",
                "created_at": "2026-11-22T00:00:00Z",
            },
        }
    ]
    for name, size, mode in SPECS:
        path = MEDIA / FOLDER / f"{name}.png"
        draw(name, size, mode, rng).save(path, optimize=True)
        rows.append(
            {
                "model": "dataset_domain.datasetimage",
                "fields": {
                    "dataset": ["sample"],
                    "image": f"{FOLDER}/{name}.png",
                    "width": size[0],
                    "height": size[1],
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "created_at": "2026-11-22T00:00:00Z",
                },
            }
        )
    (ROOT / "fixtures" / "datasets.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
