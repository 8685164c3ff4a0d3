"""The per-process pipeline registry: each checkpoint loaded once, kept resident, evicted LRU.

Text-to-image and image-to-image share one set of modules: the img2img pipeline is built from
the text-to-image pipeline's components, which neither copies nor upcasts them (a bare
`from_pipe` upcasts shared modules to float32, diffusers#12754).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from services.accel import AccelOptions, accel_apply, accel_options
from services.devices import free_memory, module_bytes, resolve_dtype
from services.types import LoraSpec, ModelSpec, ModelUnavailable

logger = logging.getLogger(__name__)

PIPELINE_CLASSES = {
    "sd1": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sd2": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
}


def fingerprint(source: str) -> str:
    """A cheap identity for a local checkpoint (a directory, or one single-file checkpoint): configs and weight
    file sizes and edges, hashed."""
    root = Path(source)
    digest = hashlib.sha256()
    if root.is_file():
        _digest_edges(digest, root)
        return digest.hexdigest()[:16]
    if not root.is_dir():
        return ""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(root)).encode())
        if path.suffix == ".json":
            digest.update(path.read_bytes())
        else:
            _digest_edges(digest, path)
    return digest.hexdigest()[:16]


def _digest_edges(digest: Any, path: Path) -> None:
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 16))
        handle.seek(max(0, size - (1 << 16)))
        digest.update(handle.read(1 << 16))


def is_single_file(source: str) -> bool:
    """A local file rather than a diffusers directory or a repo id: an original-layout (Civitai-style) checkpoint."""
    return Path(source).is_file()


@dataclass
class ResidentModel:
    spec: ModelSpec
    text2img: Any
    dtype: torch.dtype
    bytes: int
    revision: str
    base_scheduler_config: Any
    loras: OrderedDict[str, LoraSpec] = field(default_factory=OrderedDict)
    accel: AccelOptions = field(default_factory=AccelOptions)
    _img2img: Any = None

    @property
    def img2img(self) -> Any:
        if self._img2img is None:
            import diffusers

            img2img_class = getattr(diffusers, PIPELINE_CLASSES[self.spec.family][1])
            extra = {"requires_safety_checker": False} if self.spec.family != "sdxl" else {}
            self._img2img = img2img_class(**self.text2img.components, **extra)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img


PICKLED_WEIGHT_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


def _load_single_file(pipeline_class: Any, spec: ModelSpec, dtype: torch.dtype, extra: dict[str, Any]) -> Any:
    """An original-layout checkpoint in one file; its component configs and tokenizers come from ``spec.config``."""
    if Path(spec.source).suffix != ".safetensors":
        # from_single_file would torch.load a .ckpt, which unpickles (DESIGN rule 7).
        raise ModelUnavailable(f"Model {spec.name!r}: only .safetensors single-file checkpoints are accepted.")
    local_config = bool(spec.config) and Path(spec.config).is_dir()
    if local_config:
        # A component missing from the file is loaded from the config directory, by diffusers without
        # use_safetensors: a pickled weight file there would be unpickled (DESIGN rule 7).
        pickled = sorted(
            str(path.relative_to(spec.config))
            for path in Path(spec.config).rglob("*")
            if path.suffix in PICKLED_WEIGHT_SUFFIXES
        )
        if pickled:
            raise ModelUnavailable(
                f"Model {spec.name!r}: its config directory holds pickled weights ({', '.join(pickled[:3])}); "
                "only .safetensors weights are loaded."
            )
    try:
        return pipeline_class.from_single_file(
            spec.source, config=spec.config or None, local_files_only=local_config, dtype=dtype, **extra
        )
    except (OSError, ValueError) as error:
        if spec.config:
            raise
        # Without a config diffusers guesses the family from the file's keys and fetches its configs from the hub.
        raise ModelUnavailable(
            f"Cannot load model {spec.name!r} from {spec.source!r}: {error} (to load a single-file checkpoint "
            'without a hub, name a diffusers directory of the same family in the model\'s metadata as "config")'
        ) from error


class PipelineRegistry:
    def __init__(
        self,
        *,
        device: torch.device,
        dtype: str = "auto",
        max_models: int = 3,
        memory_budget_bytes: int = 0,
        accel: AccelOptions | None = None,
    ) -> None:
        self.accel = accel or AccelOptions()
        self.device = device
        self.dtype = dtype
        self.max_models = max_models
        self.memory_budget_bytes = memory_budget_bytes
        self.models: OrderedDict[str, ResidentModel] = OrderedDict()
        self.loads = 0  # checkpoint loads since the process started: tests and metrics read it
        self.evictions = 0

    def get(self, spec: ModelSpec) -> tuple[ResidentModel, float]:
        """The resident model for `spec`, loading it if needed; returns it and the seconds spent loading."""
        resident = self.models.get(spec.name)
        if resident is not None and resident.spec == spec:
            self.models.move_to_end(spec.name)
            return resident, 0.0
        if resident is not None:  # the registry row changed (source, dtype...): load it afresh
            self.evict(spec.name)
        started = time.perf_counter()
        resident = self._load(spec)
        self.models[spec.name] = resident
        self.loads += 1
        self._enforce_budget(keep=spec.name)
        seconds = time.perf_counter() - started
        logger.info(
            "loaded model %s in %.2fs (%.0f MB, %s)", spec.name, seconds, resident.bytes / 2**20, resident.dtype
        )
        return resident, seconds

    def _load(self, spec: ModelSpec) -> ResidentModel:
        import diffusers

        diffusers.utils.logging.disable_progress_bar()  # worker logs are for events, not bars

        if spec.family not in PIPELINE_CLASSES:
            raise ModelUnavailable(f"Model family {spec.family!r} is not supported.")
        pipeline_class = getattr(diffusers, PIPELINE_CLASSES[spec.family][0])
        dtype = resolve_dtype(self.device, spec.dtype, self.dtype)
        extra: dict[str, Any] = (
            {} if spec.family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        )
        try:
            if is_single_file(spec.source):
                pipe = _load_single_file(pipeline_class, spec, dtype, extra)
            else:
                # use_safetensors=True: never unpickle checkpoint weights.
                pipe = pipeline_class.from_pretrained(
                    spec.source, revision=spec.revision or None, dtype=dtype, use_safetensors=True, **extra
                )
        except (OSError, ValueError) as error:
            raise ModelUnavailable(f"Cannot load model {spec.name!r} from {spec.source!r}: {error}") from error
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        try:
            options = accel_options(self.accel, dict(spec.accel))
            if options.channels_last is None:
                options = replace(options, channels_last=self.device.type == "cuda")
        except ValueError as error:
            raise ModelUnavailable(f"Model {spec.name!r}: {error}") from error
        accel_apply(pipe, options)
        revision = spec.revision or fingerprint(spec.source) or Path(str(pipe.config.get("_name_or_path", ""))).name
        return ResidentModel(
            spec=spec,
            text2img=pipe,
            dtype=dtype,
            bytes=module_bytes(*pipe.components.values()),
            revision=revision,
            base_scheduler_config=pipe.scheduler.config,
            accel=options,
        )

    def _enforce_budget(self, *, keep: str) -> None:
        def over() -> bool:
            total = sum(model.bytes for model in self.models.values())
            too_many = len(self.models) > self.max_models
            return too_many or bool(self.memory_budget_bytes and total > self.memory_budget_bytes)

        while over() and len(self.models) > 1:
            oldest = next(name for name in self.models if name != keep)
            self.evict(oldest)

    def evict(self, name: str) -> bool:
        resident = self.models.pop(name, None)
        if resident is None:
            return False
        self.evictions += 1
        del resident
        free_memory()
        logger.info("evicted model %s", name)
        return True

    def evict_all_but(self, keep: str | None) -> None:
        for name in [name for name in self.models if name != keep]:
            self.evict(name)

    def resident_names(self) -> list[str]:
        return list(self.models)
