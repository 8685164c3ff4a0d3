"""Domain functions for the model and LoRA registries."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from image_model_domain.models import DLModel, LoraAdapter
from services.schedulers import SCHEDULERS as SCHEDULER_CONFIGS

SCHEDULERS = tuple(SCHEDULER_CONFIGS)  # the names requests and registry rows may use


def _clean_and_save(instance: DLModel | LoraAdapter, changed: Collection[str] | None = None) -> None:
    """Validate (only the `changed` fields of an existing row: an old row stays editable) and save."""
    exclude = [] if changed is None else [field.name for field in instance._meta.fields if field.name not in changed]
    if isinstance(instance, DLModel) and "default_scheduler" not in exclude:
        scheduler = instance.default_scheduler
        if scheduler not in SCHEDULERS:
            raise ValidationError({"default_scheduler": f"Unknown scheduler {scheduler!r}; use one of {SCHEDULERS}."})
    instance.full_clean(exclude=exclude)
    instance.save()


@transaction.atomic
def dlmodel_register(*, name: str, source: str, **fields: Any) -> DLModel:
    model = DLModel(name=name, source=source, **fields)
    _clean_and_save(model)
    return model


@transaction.atomic
def dlmodel_update(*, model: DLModel, **fields: Any) -> DLModel:
    for key, value in fields.items():
        setattr(model, key, value)
    _clean_and_save(model, fields)
    return model


@transaction.atomic
def lora_register(*, name: str, source: str, weight_name: str, **fields: Any) -> LoraAdapter:
    adapter = LoraAdapter(name=name, source=source, weight_name=weight_name, **fields)
    _clean_and_save(adapter)
    return adapter


@transaction.atomic
def lora_update(*, adapter: LoraAdapter, **fields: Any) -> LoraAdapter:
    for key, value in fields.items():
        setattr(adapter, key, value)
    _clean_and_save(adapter, fields)
    return adapter


def dlmodel_get_enabled(*, name: str, field: str = "model") -> DLModel:
    model = DLModel.objects.filter(name=name).first()
    if model is None:
        raise ValidationError({field: f"Unknown model {name!r}."})
    if not model.enabled:
        raise ValidationError({field: f"The model {name!r} is disabled."})
    return model


def dlmodel_default() -> DLModel:
    """The model used when a request names none: the first enabled one, preloaded ones first."""
    model = DLModel.objects.filter(enabled=True).order_by("-preload", "name").first()
    if model is None:
        raise ValidationError({"model": "No model is enabled; register or enable one."})
    return model


def lora_get_for_model(*, name: str, model: DLModel, field: str = "loras") -> LoraAdapter:
    adapter = LoraAdapter.objects.filter(name=name).first()
    if adapter is None:
        raise ValidationError({field: f"Unknown LoRA {name!r}."})
    if not adapter.enabled:
        raise ValidationError({field: f"The LoRA {name!r} is disabled."})
    if adapter.family != model.family:
        raise ValidationError(
            {
                field: f"The LoRA {name!r} is for {adapter.get_family_display()}, the model {model.name!r} is "
                f"{model.get_family_display()}."
            }
        )
    return adapter
