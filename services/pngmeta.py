"""PNG files that carry their recipe: a JSON chunk for machines and an A1111-style line for people."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

if TYPE_CHECKING:
    from services.types import Recipe

RECIPE_KEY = "diffusion-server"


def parameters_line(recipe: dict[str, Any]) -> str:
    loras = ", ".join(f"{item['name']}:{item['scale']}" for item in recipe.get("loras", []))
    parts = [
        f"Steps: {recipe['steps']}",
        f"Sampler: {recipe['scheduler']}",
        f"CFG scale: {recipe['guidance_scale']}",
        f"Seed: {recipe['seed']}",
        f"Size: {recipe['width']}x{recipe['height']}",
        f"Model: {recipe['model']}",
    ]
    if recipe.get("strength") is not None:
        parts.append(f"Denoising strength: {recipe['strength']}")
    if recipe.get("init_image_sha256"):
        parts.append(f"Init image SHA-256: {recipe['init_image_sha256']}")
    if loras:
        parts.append(f"LoRA: {loras}")
    return f"{recipe['prompt']}\nNegative prompt: {recipe.get('negative_prompt', '')}\n{', '.join(parts)}"


def png_bytes(image: Image.Image, recipe: Recipe) -> bytes:
    data = recipe.as_dict()
    info = PngInfo()
    info.add_text(RECIPE_KEY, json.dumps(data, sort_keys=True))
    info.add_text("parameters", parameters_line(data))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_recipe(data: bytes) -> dict[str, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return json.loads(image.text[RECIPE_KEY])
