"""Generate images in-process, without the queue: the same services/ code that workers run.

python manage.py generate "a red fox" --model tiny-sd-a --lora tiny-lora-ink:0.8 --seed 42 -o out.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from image_model_domain.registry import SCHEDULERS, dlmodel_default, dlmodel_get_enabled, lora_get_for_model
from image_model_domain.seeds import image_seed, seed_resolve


def lora_argument(value: str) -> tuple[str, float | None]:
    name, _, scale = value.partition(":")
    try:
        return name, float(scale) if scale else None
    except ValueError:
        raise CommandError(f"--lora {value!r}: the scale after ':' must be a number.") from None


class Command(BaseCommand):
    help = "Generate images from a prompt in this process (text-to-image, or image-to-image with --init-image)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt")
        parser.add_argument("--model", help="A registered, enabled model (default: the first enabled).")
        parser.add_argument("--negative-prompt", default="")
        parser.add_argument("--lora", action="append", default=[], type=lora_argument, metavar="NAME[:SCALE]")
        parser.add_argument("--lora-scale", type=float, default=1.0)
        parser.add_argument("--seed", type=int, default=0, help="0: random; image i uses seed + i.")
        parser.add_argument("--steps", type=int, default=25)
        parser.add_argument("--guidance-scale", type=float, default=7.5)
        parser.add_argument("--scheduler", choices=SCHEDULERS)
        parser.add_argument("--width", type=int)
        parser.add_argument("--height", type=int)
        parser.add_argument("-n", "--num-images", type=int, default=1)
        parser.add_argument("--batch-size", type=int, default=4)
        parser.add_argument("--init-image", type=Path, help="Makes it image-to-image.")
        parser.add_argument("--strength", type=float, default=0.75)
        parser.add_argument(
            "-o",
            "--output",
            type=Path,
            default=Path("out.png"),
            help="PNG path; with several images, -1, -2 ... are added before .png.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from PIL import Image
        from tqdm import tqdm

        from services.images import prepare_source
        from services.pngmeta import png_bytes
        from services.types import GenerationRequest, ImageTask, LoraSpec
        from tasks.specs import model_spec, processor, resolve_source

        try:
            model = dlmodel_get_enabled(name=options["model"]) if options["model"] else dlmodel_default()
            adapters = [(lora_get_for_model(name=name, model=model), scale) for name, scale in options["lora"]]
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        width, height = options["width"] or model.resolution, options["height"] or model.resolution
        init = None
        if options["init_image"]:
            with Image.open(options["init_image"]) as image:
                init = prepare_source(image, max(width, height))
            width, height = init.size
        seed = seed_resolve(options["seed"])
        items = [
            ImageTask(
                prompt=options["prompt"],
                negative_prompt=options["negative_prompt"],
                seed=image_seed(seed, i),
                width=width,
                height=height,
                init_image=init,
                meta={"index": i},
            )
            for i in range(options["num_images"])
        ]
        request = GenerationRequest(
            model=model_spec(model),
            items=items,
            steps=options["steps"],
            guidance_scale=options["guidance_scale"],
            strength=options["strength"],
            scheduler=options["scheduler"] or model.default_scheduler,
            loras=tuple(
                LoraSpec(
                    name=a.name,
                    source=resolve_source(a.source),
                    weight_name=a.weight_name,
                    scale=a.default_scale if scale is None else scale,
                )
                for a, scale in adapters
            ),
            lora_scale=options["lora_scale"],
            batch_size=options["batch_size"],
        )
        steps_total = len(items) * (int(options["steps"] * options["strength"]) if init else options["steps"])
        written = []
        with tqdm(total=steps_total, unit="step", desc=model.name) as bar:

            def on_batch(outputs: list) -> None:
                for output in outputs:
                    path = self._path(options["output"], output.meta["index"], len(items))
                    path.write_bytes(png_bytes(output.image, output.recipe))
                    written.append((path, output.recipe["seed"]))

            stats = processor().generate(request, on_step=lambda n: bar.update(n) or True, on_batch=on_batch)
        for path, image_seed_used in written:
            self.stdout.write(f"{path} (seed {image_seed_used})")
        self.stdout.write(f"load {stats.load_s:.2f}s, inference {stats.inference_s:.2f}s")

    @staticmethod
    def _path(output: Path, index: int, count: int) -> Path:
        return output if count == 1 else output.with_name(f"{output.stem}-{index + 1}{output.suffix}")
