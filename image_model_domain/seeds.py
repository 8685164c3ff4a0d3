"""Request seeds. One seed per request; image i of a request uses seed + i."""

from __future__ import annotations

import random
import secrets

MAX_SEED = 2**32 - 1


def seed_resolve(seed: int | None) -> int:
    """Absent or 0 means random; the seed used is recorded on the job."""
    if not seed:
        return secrets.randbelow(2**31 - 2) + 1
    return seed


def image_seed(request_seed: int, index: int) -> int:
    return (request_seed + index) % (MAX_SEED + 1)


def random_diffusion_plan(
    *, seed: int, images: list[int], prompts: list[str], models: list[str]
) -> list[dict[str, object]]:
    """Draw a prompt and a model for each source image. The same inputs always give the same plan."""
    rng = random.Random(seed)
    plan = []
    for index, image_id in enumerate(sorted(images)):
        plan.append(
            {
                "index": index,
                "source_image_id": image_id,
                "prompt": rng.choice(prompts),
                "model": rng.choice(sorted(models)),
                "seed": image_seed(seed, index),
            }
        )
    return plan
