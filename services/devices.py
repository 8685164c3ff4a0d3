"""Device and dtype choice, and freeing memory. CUDA is touched only when first asked for."""

from __future__ import annotations

import gc

import torch

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(preference)


def resolve_dtype(device: torch.device, *preferences: str) -> torch.dtype:
    """The first explicit preference wins; on 'auto', half precision on CUDA and float32 elsewhere."""
    for preference in preferences:
        if preference and preference != "auto":
            return DTYPES[preference]
    return torch.float16 if device.type == "cuda" else torch.float32


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def module_bytes(*modules: torch.nn.Module | None) -> int:
    return sum(
        parameter.numel() * parameter.element_size()
        for module in modules
        if isinstance(module, torch.nn.Module)
        for parameter in module.parameters()
    )


def gpu_memory() -> dict[str, int]:
    if not torch.cuda.is_available():
        return {}
    return {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved()}
