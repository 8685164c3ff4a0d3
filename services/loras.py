"""LoRA adapters: loaded once per resident model under their registry name, switched per job.

set_adapters gets slower as adapters accumulate (diffusers#11816), so least-recently-used
adapters are deleted past a per-model limit.
"""

from __future__ import annotations

import logging

from services.pipelines import ResidentModel
from services.types import LoraSpec, ModelUnavailable

logger = logging.getLogger(__name__)


def check_safetensors(lora: LoraSpec) -> None:
    # An explicit non-safetensors weight_name makes diffusers unpickle the file (DESIGN rule 7).
    if not lora.weight_name.endswith(".safetensors"):
        raise ModelUnavailable(f"LoRA {lora.name!r}: only .safetensors weights are accepted, not {lora.weight_name!r}.")


class LoraCache:
    def __init__(self, *, max_per_model: int = 8) -> None:
        self.max_per_model = max_per_model
        self.loads = 0

    def activate(self, resident: ResidentModel, loras: tuple[LoraSpec, ...]) -> None:
        """Make exactly `loras` active at their scales; with none, the base model runs unchanged."""
        pipe = resident.text2img
        for lora in loras:
            check_safetensors(lora)
            known = resident.loras.get(lora.name)
            if known is not None and (known.source, known.weight_name) != (lora.source, lora.weight_name):
                self._delete(resident, lora.name)
                known = None
            if known is None:
                try:
                    pipe.load_lora_weights(
                        lora.source, weight_name=lora.weight_name, adapter_name=lora.name, use_safetensors=True
                    )
                except (OSError, ValueError) as error:
                    raise ModelUnavailable(f"Cannot load LoRA {lora.name!r} from {lora.source!r}: {error}") from error
                self.loads += 1
            resident.loras[lora.name] = lora
            resident.loras.move_to_end(lora.name)
        wanted = {lora.name for lora in loras}
        while len(resident.loras) > self.max_per_model:
            oldest = next(name for name in resident.loras if name not in wanted)
            self._delete(resident, oldest)
        if loras:
            pipe.enable_lora()
            pipe.set_adapters([lora.name for lora in loras], adapter_weights=[lora.scale for lora in loras])
        elif resident.loras:
            pipe.disable_lora()

    def deactivate(self, resident: ResidentModel) -> None:
        if resident.loras:
            resident.text2img.disable_lora()

    def drop(self, resident: ResidentModel, name: str) -> None:
        """Forget an adapter (it was disabled or changed in the registry)."""
        self._delete(resident, name)

    def _delete(self, resident: ResidentModel, name: str) -> None:
        resident.text2img.delete_adapters(name)
        resident.loras.pop(name, None)
        logger.info("deleted LoRA %s from %s", name, resident.spec.name)
