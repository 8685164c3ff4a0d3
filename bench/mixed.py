"""(c) mixed checkpoints and LoRAs in one engine."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bench.common import LORA_COMBOS, LORAS, MODELS, SEED, text_request, timed

if TYPE_CHECKING:
    from services.types import LoraSpec, ModelSpec


@dataclass
class MixedResult:
    warmup_pipeline_loads: int = 0
    warmup_lora_loads: int = 0
    pipeline_loads: int = 0
    lora_loads: int = 0
    evictions: int = 0
    jobs: int = 0
    seconds_by_lora_count: dict[int, list[float]] = field(default_factory=dict)

    @property
    def reloads(self) -> int:
        return self.pipeline_loads + self.lora_loads


def run_mixed(config: Any, specs: dict[str, ModelSpec], loras: dict[str, LoraSpec], jobs: int) -> MixedResult:
    from services.engine import DiffusersEngine

    engine = DiffusersEngine(replace(config, max_models=max(3, config.max_models)))
    models = [specs[name] for name in MODELS]
    for spec in models:
        timed(engine, text_request(spec))
        for name in LORAS:
            timed(engine, text_request(spec, (loras[name],)))
    result = MixedResult(warmup_pipeline_loads=engine.pipelines.loads, warmup_lora_loads=engine.loras.loads)
    evictions_before = engine.pipelines.evictions
    for index in range(jobs):
        combo = LORA_COMBOS[index % len(LORA_COMBOS)]
        request = text_request(models[index % len(models)], tuple(loras[name] for name in combo), seed=SEED + index)
        result.seconds_by_lora_count.setdefault(len(combo), []).append(timed(engine, request))
    result.jobs = jobs
    result.pipeline_loads = engine.pipelines.loads - result.warmup_pipeline_loads
    result.lora_loads = engine.loras.loads - result.warmup_lora_loads
    result.evictions = engine.pipelines.evictions - evictions_before
    return result
