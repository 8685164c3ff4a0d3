"""How many denoising steps a run takes: one helper for job progress, queue estimates and the engine.

Plain Python (no torch), so the web process can import it.
"""

from __future__ import annotations


def denoising_steps(steps: int, strength: float | None = None) -> int:
    """The denoising steps diffusers runs for one image.

    Text-to-image (strength None) runs all `steps`. Image-to-image starts part-way through the
    schedule and runs `min(int(steps * strength), steps)`, as StableDiffusionImg2ImgPipeline's
    `get_timesteps` computes it: 150 steps at strength 0.2 run 30.
    """
    if strength is None:
        return steps
    return min(int(steps * strength), steps)


def strength_error(steps: int, strength: float) -> str | None:
    """A message when an image-to-image request would run no step at all (diffusers fails on it)."""
    if denoising_steps(steps, strength) >= 1:
        return None
    return (
        f"strength {strength} with {steps} steps runs int({steps} × {strength}) = 0 denoising steps; "
        "raise the strength or the steps so that their product is at least 1."
    )
