"""Plain data passed between the task layer and a processor. No torch, no Django."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # a local directory, a local single-file .safetensors checkpoint, or a Hugging Face repo id
    revision: str | None = None
    family: str = "sd1"
    dtype: str = "auto"
    resolution: int = 512
    accel: tuple[tuple[str, Any], ...] = ()  # per-model overrides of services.accel.AccelOptions
    # A single-file checkpoint's component configs and tokenizers: a diffusers directory (or repo id) of the
    # same family. None: diffusers guesses the family from the file's keys and fetches its configs from the hub.
    config: str | None = None


@dataclass(frozen=True)
class LoraSpec:
    name: str
    source: str
    weight_name: str
    scale: float = 1.0


@dataclass
class ImageTask:
    """One output image: its prompt and seed, and for image-to-image its source."""

    prompt: str
    seed: int
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    init_image: Image.Image | None = None
    init_image_sha256: str | None = None  # of the source file, recorded in the recipe so a PNG can be replayed
    meta: dict[str, Any] = field(default_factory=dict)  # carried through to the output untouched


@dataclass
class GenerationRequest:
    model: ModelSpec
    items: list[ImageTask]
    steps: int = 25
    guidance_scale: float = 7.5
    strength: float | None = 0.75  # image-to-image only; a text-to-image job's plan holds None
    scheduler: str = "euler"
    loras: tuple[LoraSpec, ...] = ()
    lora_scale: float = 1.0
    batch_size: int = 4
    preview_every: int = 0  # denoising steps between two previews; 0: none


@dataclass(frozen=True)
class LoraUse:
    name: str
    scale: float


@dataclass(frozen=True)
class Recipe:
    """Everything needed to replay one image; written into its PNG and onto its row."""

    prompt: str
    negative_prompt: str
    model: str
    model_source: str
    model_revision: str | None
    loras: tuple[LoraUse, ...]
    lora_scale: float
    scheduler: str
    steps: int
    guidance_scale: float
    strength: float | None  # image-to-image only
    init_image_sha256: str | None  # image-to-image only: the source file's
    width: int
    height: int
    seed: int
    dtype: str
    device: str
    versions: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the form stored in a PNG and read back by services.pngmeta.read_recipe."""
        data = asdict(self)
        data["loras"] = list(data["loras"])
        return data


@dataclass
class Output:
    image: Image.Image
    recipe: Recipe
    meta: dict[str, Any]


@dataclass
class RunStats:
    load_s: float = 0.0
    inference_s: float = 0.0
    images: int = 0
    batches: list[tuple[float, float]] = field(default_factory=list)  # (start, end) per batch, perf_counter


class Cancelled(Exception):
    """The caller asked the run to stop; no output of the interrupted batch is returned."""


class OutOfMemory(Exception):
    """The device ran out of memory even after freeing caches and retrying one image at a time."""


class ModelUnavailable(Exception):
    """The checkpoint or adapter weights cannot be had (no hub, missing directory, unsafe format)."""


StepCallback = Callable[[int], bool]  # steps done since the last call -> keep going?
BatchCallback = Callable[[list[Output]], None]
BatchStartCallback = Callable[[list[dict[str, Any]]], None]  # the metas of the items a pipeline call runs
PreviewCallback = Callable[[list[tuple[dict[str, Any], bytes]]], None]  # [(an item's meta, JPEG bytes)]
