"""Job rows and registry rows -> services' plain specs. The one place that maps Django onto services/."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from dataset_domain.models import DatasetImage
from image_model_domain.models import DLModel, GenerationJob, JobKind, LoraAdapter
from image_model_domain.seeds import image_seed
from image_model_domain.sources import source_problem, weight_name_problem

if TYPE_CHECKING:
    from PIL import Image

    from services.types import GenerationRequest


def resolve_source(source: str, *, what: str = "model", single_file: bool = False) -> str:
    """A directory (or, with single_file, a .safetensors file) under MODEL_ROOT or an allowed absolute path is
    local; anything else is a hub repo id.

    Checked again here, before anything is loaded: a row written past the API (a shell, a fixture,
    an old row) must not make a worker read outside MODEL_ROOT and MODEL_SOURCE_DIRS.
    """
    problem = source_problem(source, single_file=single_file)
    if problem:
        raise ValueError(f"The {what}'s source is not allowed: {problem}")
    candidate = Path(source)
    if candidate.is_absolute():
        return str(candidate)
    local = settings.MODEL_ROOT / source
    return str(local) if local.exists() else source


def model_spec(model: DLModel):  # noqa: ANN201
    from services.types import ModelSpec

    return ModelSpec(
        name=model.name,
        source=resolve_source(model.source, what=f"model {model.name!r}", single_file=True),
        revision=model.revision or None,
        family=model.family,
        dtype=model.dtype,
        resolution=model.resolution,
        accel=_accel_overrides(model),
        config=_single_file_config(model),
    )


def _single_file_config(model: DLModel) -> str | None:
    """metadata {"config": "dev/tiny-sd-a"}: where a single-file checkpoint's component configs are (a source)."""
    config = (model.metadata or {}).get("config") if isinstance(model.metadata, dict) else None
    if config is None:
        return None
    if not isinstance(config, str):
        raise ValueError(f"The model {model.name!r} has a bad metadata config: give a directory or repo id.")
    return resolve_source(config, what=f"model {model.name!r} config")


def _accel_overrides(model: DLModel) -> tuple:
    """metadata {"accel": {"fuse_qkv": true, ...}}: this model's own acceleration options (checked at load)."""
    overrides = (model.metadata or {}).get("accel") if isinstance(model.metadata, dict) else None
    return tuple(sorted(overrides.items())) if isinstance(overrides, dict) else ()


def lora_specs(loras: list[dict]) -> tuple:  # noqa: ANN001
    from services.types import LoraSpec

    adapters = {
        adapter.name: adapter for adapter in LoraAdapter.objects.filter(name__in=[item["name"] for item in loras])
    }
    specs = []
    for item in loras:
        adapter = adapters.get(item["name"])
        if adapter is None:
            raise LookupError(f"The LoRA {item['name']!r} is no longer registered.")
        if weight_name_problem(adapter.weight_name):
            raise ValueError(
                f"The LoRA {adapter.name!r} has a bad weight_name: {weight_name_problem(adapter.weight_name)}"
            )
        specs.append(
            LoraSpec(
                name=adapter.name,
                source=resolve_source(adapter.source, what=f"LoRA {adapter.name!r}"),
                weight_name=adapter.weight_name,
                scale=float(item["scale"]),
            )
        )
    return tuple(specs)


def engine_config():  # noqa: ANN201
    from services.accel import AccelOptions
    from services.engine import EngineConfig

    return EngineConfig(
        device=settings.DIFFUSION_DEVICE,
        dtype=settings.DIFFUSION_DTYPE,
        max_models=settings.DIFFUSION_MAX_RESIDENT_MODELS,
        memory_budget_bytes=settings.DIFFUSION_MEMORY_BUDGET_MB * 2**20,
        max_loras_per_model=settings.DIFFUSION_MAX_LORAS_PER_MODEL,
        accel=AccelOptions(
            attention=settings.DIFFUSION_ATTENTION,
            channels_last={"auto": None, "true": True, "false": False}[settings.DIFFUSION_CHANNELS_LAST],
            fuse_qkv=settings.DIFFUSION_FUSE_QKV,
            compile=settings.DIFFUSION_COMPILE,
            compile_cache_dir=str(settings.DIFFUSION_COMPILE_CACHE_DIR),
        ),
    )


def engine():  # noqa: ANN201
    from services.engine import get_engine

    return get_engine(engine_config())


def job_requests(job: GenerationJob) -> list[GenerationRequest]:
    """What a job runs: one services request per model and scheduler, each image with its planned seed.

    The plan in job.params is complete (image_model_domain/jobs.py decides everything at create);
    only rows written before it was are completed here, in job_plan, as they always ran.
    """
    from services.types import GenerationRequest, ImageTask

    plan = job_plan(job)
    preview_every = settings.PREVIEW_EVERY_STEPS if plan.get("preview") else 0
    if job.kind == JobKind.RANDOM_DIFFUSION:
        models = _models([item["model"] for item in plan["items"]])
        sources = DatasetImage.objects.in_bulk([item["source_image_id"] for item in plan["items"]])
        groups: dict[tuple[str, str], list[ImageTask]] = {}
        for item in plan["items"]:
            model = models[item["model"]]
            source = sources.get(item["source_image_id"])
            if source is None:
                raise LookupError(f"Source image {item['source_image_id']} was deleted from the dataset.")
            init, sha256 = open_source(source.image, model.resolution)
            groups.setdefault((item["model"], item["scheduler"]), []).append(
                ImageTask(
                    prompt=item["prompt"],
                    negative_prompt=plan["negative_prompt"],
                    seed=item["seed"],
                    width=init.width,
                    height=init.height,
                    init_image=init,
                    init_image_sha256=sha256,
                    meta={"index": item["index"], "source_image_id": source.pk},
                )
            )
        return [
            GenerationRequest(
                model=model_spec(models[name]),
                items=items,
                steps=plan["steps"],
                guidance_scale=plan["guidance_scale"],
                strength=plan["strength"],
                scheduler=scheduler,
                batch_size=plan["batch_size"],
                preview_every=preview_every,
            )
            for (name, scheduler), items in sorted(groups.items())
        ]

    model = _models([plan["model"]])[plan["model"]]
    init, sha256 = None, None
    if job.init_image:
        init, sha256 = open_source(job.init_image, max(plan["width"], plan["height"]))
    width, height = (init.width, init.height) if init else (plan["width"], plan["height"])
    items = [
        ImageTask(
            prompt=plan["prompt"],
            negative_prompt=plan["negative_prompt"],
            seed=seed,
            width=width,
            height=height,
            init_image=init,
            init_image_sha256=sha256,
            meta={"index": index},
        )
        for index, seed in enumerate(plan["seeds"])
    ]
    return [
        GenerationRequest(
            model=model_spec(model),
            items=items,
            steps=plan["steps"],
            guidance_scale=plan["guidance_scale"],
            strength=plan["strength"],
            scheduler=plan["scheduler"],
            loras=lora_specs(plan["loras"]),
            lora_scale=plan["lora_scale"],
            batch_size=plan["batch_size"],
            preview_every=preview_every,
        )
    ]


def job_plan(job: GenerationJob) -> dict[str, Any]:
    """job.params, with the keys that rows written before the plan was complete lack, as those rows ran.

    Those rows left the batch size to the worker's setting, derived image i's seed from the request
    seed, and left a random diffusion's scheduler (when none was asked for) to each model's default.
    """
    plan = dict(job.params)
    plan.setdefault("batch_size", settings.DIFFUSION_BATCH_SIZE)
    if job.kind == JobKind.RANDOM_DIFFUSION:
        if any("scheduler" not in item for item in plan["items"]):
            defaults = {name: model.default_scheduler for name, model in _models(plan["models"]).items()}
            plan["items"] = [
                {"scheduler": plan["scheduler"] or defaults[item["model"]], **item} for item in plan["items"]
            ]
    else:
        plan.setdefault("seeds", [image_seed(job.seed, index) for index in range(plan["num_images"])])
    return plan


def _models(names: list[str]) -> dict[str, DLModel]:
    models = DLModel.objects.in_bulk(set(names), field_name="name")
    for name in names:
        if name not in models:
            raise LookupError(f"The model {name!r} is no longer registered.")
    return models


def open_source(field: Any, resolution: int) -> tuple[Image.Image, str]:
    """A stored source image, ready for the model, and the SHA-256 of its file (recorded to replay it)."""
    import io

    from PIL import Image

    from services.images import prepare_source

    with field.open("rb") as handle:
        data = handle.read()
    with Image.open(io.BytesIO(data)) as image:
        return prepare_source(image, resolution), hashlib.sha256(data).hexdigest()
