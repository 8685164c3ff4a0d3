"""Registry rows -> services' plain specs. The one place that maps Django settings onto services/."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from image_model_domain.models import DLModel, LoraAdapter
from image_model_domain.sources import source_problem, weight_name_problem


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


def processor():  # noqa: ANN201
    from services.engine import get_processor

    return get_processor(engine_config())
