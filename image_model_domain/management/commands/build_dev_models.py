"""Build offline development checkpoints and LoRAs (random weights) and register them.

    python manage.py build_dev_models                 # two tiny checkpoints, two LoRAs (seconds)
    python manage.py build_dev_models --shape small   # three ~0.5 s/image checkpoints for benchmarks
    python manage.py build_dev_models --shape full    # the SD-1.5 shape, for GPU timings
    python manage.py build_dev_models --shape tiny-xl # a tiny SDXL-shaped checkpoint and LoRA (family sdxl)

Running it again changes nothing: builds are skipped when present, rows are created only if missing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from image_model_domain.models import DLModel, LoraAdapter

# name -> (seed, default scheduler, preload); LoRAs: name -> seed.
DEV_MODELS = {
    "tiny": (
        {"tiny-sd-a": (1, "euler", True), "tiny-sd-b": (2, "euler", False)},
        {"tiny-lora-ink": 11, "tiny-lora-glow": 12},
    ),
    "small": (
        {"small-sd-a": (21, "euler", False), "small-sd-b": (22, "euler", False), "small-sd-c": (23, "euler", False)},
        {"small-lora-ink": 31, "small-lora-glow": 32},
    ),
    "full": ({"sd15-random": (41, "euler", False)}, {"sd15-random-lora": 51}),
    # Not among the default tiny set: an SDXL model beside the SD-1 ones would be drawn by random
    # diffusion, whose LoRAs and prompts are for SD 1.x.
    "tiny-xl": ({"tiny-sdxl": (61, "euler", False)}, {"tiny-sdxl-lora": 71}),
}
#: Sets of another family than SD 1.x: set -> (family, devtools shape).
XL_SETS = {"tiny-xl": ("sdxl", "tiny")}
LORA_WEIGHT_NAME = "lora.safetensors"


def dev_models_build_files(shape: str) -> dict[str, bool]:
    """Build one shape's checkpoints and LoRAs under MODEL_ROOT/dev; returns name -> built now."""
    if shape in XL_SETS:
        from devtools.sdxl import build_xl_checkpoint as build_checkpoint
        from devtools.sdxl import build_xl_lora as build_lora

        shape_name = XL_SETS[shape][1]
    else:
        from devtools.devmodels import build_checkpoint, build_lora

        shape_name = shape
    models, loras = DEV_MODELS[shape]
    built = {}
    for name, (seed, _, _) in models.items():
        built[name] = build_checkpoint(settings.MODEL_ROOT / "dev" / name, shape=shape_name, seed=seed)
    for name, seed in loras.items():
        built[name] = build_lora(
            settings.MODEL_ROOT / "dev" / name, shape=shape_name, seed=seed, weight_name=LORA_WEIGHT_NAME
        )
    return built


def dev_models_resolution(shape: str) -> int:
    if shape in XL_SETS:
        from devtools.sdxl import XL_SHAPES

        return XL_SHAPES[XL_SETS[shape][1]].resolution
    from devtools.devmodels import SHAPES

    return SHAPES[shape].resolution


class Command(BaseCommand):
    help = "Build development checkpoints and LoRAs with random weights under MODEL_ROOT/dev and register them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--shape", choices=sorted(DEV_MODELS), action="append", help="Shapes to build (repeatable); default: tiny."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for shape in options["shape"] or ["tiny"]:
            models, loras = DEV_MODELS[shape]
            resolution = dev_models_resolution(shape)
            family = XL_SETS.get(shape, ("sd1",))[0]
            label = {"sd1": "SD-1", "sdxl": "SDXL"}[family]
            built_now = dev_models_build_files(shape)
            for name, (seed, scheduler, preload) in models.items():
                source = f"dev/{name}"
                _, created = DLModel.objects.get_or_create(
                    name=name,
                    defaults={
                        "source": source,
                        "family": family,
                        "resolution": resolution,
                        "default_scheduler": scheduler,
                        # The SD-1.5 shape runs for minutes per image on a CPU: never drawn unless enabled.
                        "enabled": shape != "full",
                        "preload": preload,
                        "description": f"Development checkpoint ({shape} {label} shape, random weights, seed {seed}).",
                        "metadata": {"dev_shape": shape, "seed": seed},
                    },
                )
                self._report(name, built_now[name], created)
            for name, seed in loras.items():
                source = f"dev/{name}"
                _, created = LoraAdapter.objects.get_or_create(
                    name=name,
                    defaults={
                        "source": source,
                        "weight_name": LORA_WEIGHT_NAME,
                        "family": family,
                        "default_scale": 1.0,
                        "description": f"Development LoRA for the {shape} dev checkpoints (random, seed {seed}).",
                    },
                )
                self._report(name, built_now[name], created)

    def _report(self, name: str, built: bool, created: bool) -> None:
        state = ", ".join(part for part, flag in (("built", built), ("registered", created)) if flag) or "up to date"
        self.stdout.write(f"{name}: {state}")
