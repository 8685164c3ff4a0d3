"""The diffusers processor: the one entry point that tasks, the CLI and benchmarks call."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from services.accel import AccelOptions, lora_compatible
from services.devices import free_memory, is_out_of_memory, resolve_device
from services.loras import LoraCache
from services.pipelines import PipelineRegistry, ResidentModel
from services.previews import preview_jpegs
from services.prompts import encode_in_windows, encode_in_windows_xl, needs_windows, window_count
from services.schedulers import scheduler_create
from services.steps import denoising_steps
from services.types import (
    BatchCallback,
    BatchStartCallback,
    Cancelled,
    GenerationRequest,
    ImageTask,
    LoraUse,
    ModelSpec,
    OutOfMemory,
    Output,
    PreviewCallback,
    Recipe,
    RunStats,
    StepCallback,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    dtype: str = "auto"
    max_models: int = 3
    memory_budget_bytes: int = 0
    max_loras_per_model: int = 8
    accel: AccelOptions = AccelOptions()


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"diffusers": diffusers.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _tokenizers(pipe: Any) -> list[Any]:
    """The pipeline's tokenizers: one for SD 1.x/2.x, two for SDXL."""
    return [tokenizer for tokenizer in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if tokenizer is not None]


class DiffusersEngine:
    """Runs requests on preloaded diffusers pipelines. One per process, never shared between threads."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.pipelines = PipelineRegistry(
            device=self.device,
            dtype=config.dtype,
            max_models=config.max_models,
            memory_budget_bytes=config.memory_budget_bytes,
            accel=config.accel,
        )
        self.loras = LoraCache(max_per_model=config.max_loras_per_model)
        self.versions = library_versions()

    def preload(self, models: list[ModelSpec]) -> None:
        for spec in models[: self.config.max_models]:
            resident, _ = self.pipelines.get(spec)
            if resident.accel.compile:  # compile now, at the model's own size, not in the first job
                size = spec.resolution
                warm_up = GenerationRequest(model=spec, items=[ImageTask(prompt="", seed=0, width=size, height=size)])
                self.generate(replace(warm_up, steps=2))

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_step: StepCallback | None = None,
        on_batch: BatchCallback | None = None,
        on_preview: PreviewCallback | None = None,
        on_batch_start: BatchStartCallback | None = None,
    ) -> RunStats:
        """on_batch_start is told which items (their meta) each pipeline call runs, before it runs them."""
        stats = RunStats()
        on_preview = on_preview if request.preview_every else None
        resident, stats.load_s = self.pipelines.get(request.model)
        self.loras.activate(resident, request.loras)
        try:
            with lora_compatible(resident.text2img, resident.accel, with_loras=bool(request.loras)):
                for batch in self._batches(request.items, request.batch_size, self._windows_of(resident)):
                    started = time.perf_counter()
                    outputs = self._run_with_memory_retry(resident, request, batch, on_step, on_preview, on_batch_start)
                    finished = time.perf_counter()
                    stats.inference_s += finished - started
                    stats.batches.append((started, finished))
                    stats.images += len(outputs)
                    if on_batch is not None:
                        on_batch(outputs)
        finally:
            self.loras.deactivate(resident)
        return stats

    @staticmethod
    def _windows_of(resident: ResidentModel) -> Callable[[ImageTask], int]:
        """How many 75-token prompt windows an item needs (by the longest of its tokenizers' counts)."""
        tokenizers = _tokenizers(resident.text2img)
        return lambda item: max(
            window_count(tokenizer, text) for tokenizer in tokenizers for text in (item.prompt, item.negative_prompt)
        )

    @staticmethod
    def _batches(
        items: list[ImageTask], batch_size: int, windows: Callable[[ImageTask], int] = lambda item: 1
    ) -> list[list[ImageTask]]:
        """Items of one size, kind and prompt length (in windows) run together; each keeps its own seed,
        and no prompt is padded with windows it would not have alone, so batching never changes pixels."""
        key = lambda item: (item.init_image is not None, item.width, item.height, windows(item))  # noqa: E731
        batches = []
        for _, group in itertools.groupby(sorted(items, key=key), key=key):
            group = list(group)
            batches += [group[start : start + batch_size] for start in range(0, len(group), batch_size)]
        return batches

    def _run_with_memory_retry(
        self,
        resident: ResidentModel,
        request: GenerationRequest,
        batch: list[ImageTask],
        on_step: StepCallback | None,
        on_preview: PreviewCallback | None = None,
        on_batch_start: BatchStartCallback | None = None,
    ) -> list[Output]:
        try:
            return self._run_batch(resident, request, batch, on_step, on_preview, on_batch_start)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            logger.warning(
                "out of memory on %s with a batch of %d; freeing and retrying one by one",
                request.model.name,
                len(batch),
            )
        # Free everything but this model and retry one image at a time; the worker lives on either way.
        self.pipelines.evict_all_but(request.model.name)
        free_memory()
        try:
            return [
                output
                for item in batch
                for output in self._run_batch(resident, request, [item], on_step, on_preview, on_batch_start)
            ]
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            free_memory()
            raise OutOfMemory(
                f"Out of device memory running {request.model.name} at {batch[0].width}x{batch[0].height}, "
                "even one image at a time."
            ) from error

    def _run_batch(
        self,
        resident: ResidentModel,
        request: GenerationRequest,
        batch: list[ImageTask],
        on_step: StepCallback | None,
        on_preview: PreviewCallback | None = None,
        on_batch_start: BatchStartCallback | None = None,
    ) -> list[Output]:
        img2img = batch[0].init_image is not None
        pipe = resident.img2img if img2img else resident.text2img
        pipe.scheduler = scheduler_create(request.scheduler, resident.base_scheduler_config)
        cancelled = False
        expected = denoising_steps(request.steps, request.strength if img2img else None)

        done = 0  # denoising steps finished in this batch

        def step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal cancelled, done
            # Some schedulers call back more often than they step (Heun twice per step, PNDM once
            # more at the start): count a step where diffusers' own progress bar does, so progress
            # ends at exactly denoising_steps(); the cancel flag is still read on every call.
            order = pipeline.scheduler.order
            warmup = pipeline._num_timesteps - expected * order
            finished_step = step == pipeline._num_timesteps - 1 or (step + 1 > warmup and (step + 1) % order == 0)
            if on_step is not None and not on_step(len(batch) if finished_step else 0):
                cancelled = True
                pipeline._interrupt = True  # the documented way to stop a pipeline between steps
            elif on_preview is not None and finished_step:
                done += 1
                if done % request.preview_every == 0:
                    self._preview(resident, batch, callback_kwargs.get("latents"), on_preview)
            return callback_kwargs

        if on_batch_start is not None:
            on_batch_start([item.meta for item in batch])
        if on_step is not None and not on_step(0):
            raise Cancelled()
        kwargs: dict[str, Any] = {
            **self._prompts(resident, pipe, request, batch),
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance_scale,
            # CPU generators, one per image: the same seed gives the same noise on any device and in any batch.
            "generator": [torch.Generator("cpu").manual_seed(item.seed) for item in batch],
            "callback_on_step_end": step_end,
        }
        if request.loras:
            kwargs["cross_attention_kwargs"] = {"scale": request.lora_scale}
        if img2img:
            kwargs.update(image=[item.init_image for item in batch], strength=request.strength)
        else:
            kwargs.update(width=batch[0].width, height=batch[0].height)
        with torch.inference_mode():
            images = pipe(**kwargs).images
        if cancelled:
            raise Cancelled()
        return [
            Output(image=image, recipe=self._recipe(resident, request, item, image), meta=item.meta)
            for item, image in zip(batch, images, strict=True)
        ]

    @staticmethod
    def _prompts(
        resident: ResidentModel, pipe: Any, request: GenerationRequest, batch: list[ImageTask]
    ) -> dict[str, Any]:
        """Prompts as text, or, when one is longer than CLIP's 77 tokens (or an SDXL negative prompt is empty), as
        embeddings (of 75-token windows)."""
        prompts = [item.prompt for item in batch]
        negative = [item.negative_prompt for item in batch]
        # SDXL-base was trained with zeros for an empty negative prompt (force_zeros_for_empty_prompt); diffusers
        # applies it only to a whole batch without negative prompts, so the service zeroes them itself, per image.
        zero_negatives = resident.spec.family == "sdxl" and "" in negative
        zero_negatives = zero_negatives and bool(resident.text2img.config.get("force_zeros_for_empty_prompt"))
        windows = any(needs_windows(tokenizer, prompts + negative) for tokenizer in _tokenizers(pipe))
        if not windows and not zero_negatives:
            return {"prompt": prompts, "negative_prompt": negative}
        lora_scale = request.lora_scale if request.loras else None
        if resident.spec.family == "sdxl":
            with torch.inference_mode():
                return encode_in_windows_xl(
                    pipe, prompts, negative, lora_scale=lora_scale, zero_empty_negatives=zero_negatives
                )
        with torch.inference_mode():
            embeds, negative_embeds = encode_in_windows(pipe, prompts, negative, lora_scale=lora_scale)
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}

    @staticmethod
    def _preview(resident: ResidentModel, batch: list[ImageTask], latents: Any, on_preview: PreviewCallback) -> None:
        """A preview never fails the job: it is a convenience beside the real images."""
        if latents is None:
            return
        try:
            jpegs = preview_jpegs(latents, resident.spec.family, (batch[0].width, batch[0].height))
            if jpegs:
                on_preview([(item.meta, jpeg) for item, jpeg in zip(batch, jpegs, strict=True)])
        except Exception:
            logger.exception("preview of %s failed", resident.spec.name)

    def _recipe(self, resident: ResidentModel, request: GenerationRequest, item: ImageTask, image: Any) -> Recipe:
        img2img = item.init_image is not None
        return Recipe(
            prompt=item.prompt,
            negative_prompt=item.negative_prompt,
            model=resident.spec.name,
            model_source=resident.spec.source,
            model_revision=resident.revision,
            loras=tuple(LoraUse(name=lora.name, scale=lora.scale) for lora in request.loras),
            lora_scale=request.lora_scale,
            scheduler=request.scheduler,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            strength=request.strength if img2img else None,
            init_image_sha256=item.init_image_sha256 if img2img else None,
            width=image.width,
            height=image.height,
            seed=item.seed,
            dtype=str(resident.dtype).removeprefix("torch."),
            device=self.device.type,
            versions=self.versions,
        )


_engine: DiffusersEngine | None = None


def get_engine(config: EngineConfig) -> DiffusersEngine:
    """The process's one engine. Created lazily, so importing this module touches no device."""
    global _engine
    if _engine is None or _engine.config != config:
        _engine = DiffusersEngine(config)
    return _engine
