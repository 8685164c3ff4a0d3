"""Generate images in-process, without the queue: the same services/ code that workers run.

python manage.py generate "a red fox" --model tiny-sd-a --lora tiny-lora-ink:0.8 --seed 42 -o out.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from image_model_domain.jobs import generation_plan, generation_request
from image_model_domain.models import GenerationJob, JobKind
from image_model_domain.registry import SCHEDULERS
from image_model_domain.seeds import seed_resolve


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
        from django.core.files import File
        from tqdm import tqdm

        from services.pngmeta import png_bytes
        from services.steps import denoising_steps
        from tasks.specs import engine, job_requests

        init_path = options["init_image"]
        try:
            model, request = generation_request(
                model_name=options["model"],
                prompt=options["prompt"],
                negative_prompt=options["negative_prompt"],
                num_images=options["num_images"],
                steps=options["steps"],
                guidance_scale=options["guidance_scale"],
                width=options["width"],
                height=options["height"],
                scheduler=options["scheduler"],
                loras=[{"name": name, "scale": scale} for name, scale in options["lora"]],
                lora_scale=options["lora_scale"],
                strength=options["strength"] if init_path else None,
            )
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        seed = seed_resolve(options["seed"])
        plan = {**request, **generation_plan(seed=seed, num_images=options["num_images"])}
        # The job a worker would run, never saved: its requests are exactly what a worker builds.
        job = GenerationJob(kind=JobKind.TEXT_TO_IMAGE, params={**plan, "batch_size": options["batch_size"]}, seed=seed)
        if init_path:
            job.kind, job.init_image = JobKind.IMAGE_TO_IMAGE, File(init_path.open("rb"), name=init_path.name)
        (generation,) = job_requests(job)
        steps_total = len(generation.items) * denoising_steps(plan["steps"], plan["strength"])
        written = []
        with tqdm(total=steps_total, unit="step", desc=model.name) as bar:

            def on_batch(outputs: list) -> None:
                for output in outputs:
                    path = self._path(options["output"], output.meta["index"], len(generation.items))
                    path.write_bytes(png_bytes(output.image, output.recipe))
                    written.append((path, output.recipe.seed))

            stats = engine().generate(generation, on_step=lambda n: bar.update(n) or True, on_batch=on_batch)
        for path, image_seed_used in written:
            self.stdout.write(f"{path} (seed {image_seed_used})")
        self.stdout.write(f"load {stats.load_s:.2f}s, inference {stats.inference_s:.2f}s")

    @staticmethod
    def _path(output: Path, index: int, count: int) -> Path:
        return output if count == 1 else output.with_name(f"{output.stem}-{index + 1}{output.suffix}")
