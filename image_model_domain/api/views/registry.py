"""Registry views: checkpoints and LoRA adapters (staff write through registry.py, everyone reads; lists cached)."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from common.api.permissions import IsStaffOrReadOnly
from image_model_domain.api.serializers import DLModelSerializer, LoraAdapterSerializer
from image_model_domain.api.views.openapi import (
    LORA_EXAMPLE,
    MODEL_EXAMPLE,
    registry_detail_schema,
    registry_list_schema,
)
from image_model_domain.caching import TIMEOUT_S as CACHE_TIMEOUT_S
from image_model_domain.caching import registry_list_key
from image_model_domain.models import DLModel, LoraAdapter
from image_model_domain.registry import dlmodel_register, dlmodel_update, lora_register, lora_update


class CachedRegistryList(generics.ListCreateAPIView):
    """Registry lists from the cache; any save or delete of a row bumps the key's version."""

    cache_kind = ""

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = registry_list_key(self.cache_kind, request.build_absolute_uri())
        data = cache.get(key)
        if data is None:
            data = super().list(request, *args, **kwargs).data
            cache.set(key, data, CACHE_TIMEOUT_S)
        return Response(data)


@registry_list_schema(
    DLModelSerializer,
    "model",
    MODEL_EXAMPLE,
    {"name": "sd15", "source": "stable-diffusion-v1-5/stable-diffusion-v1-5", "family": "sd1", "resolution": 512},
)
class DLModelListView(CachedRegistryList):
    cache_kind = "models"
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    filterset_fields = ["family", "enabled", "preload"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.instance = dlmodel_register(**serializer.validated_data)


@registry_detail_schema(DLModelSerializer, "model", MODEL_EXAMPLE, {"enabled": False})
class DLModelDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = DLModelSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = DLModel.objects.all()
    lookup_field = "name"

    def perform_update(self, serializer: BaseSerializer) -> None:
        serializer.instance = dlmodel_update(model=serializer.instance, **serializer.validated_data)


@registry_list_schema(
    LoraAdapterSerializer,
    "LoRA adapter",
    LORA_EXAMPLE,
    {"name": "ink", "source": "org/ink-lora", "weight_name": "pytorch_lora_weights.safetensors", "family": "sd1"},
)
class LoraListView(CachedRegistryList):
    cache_kind = "loras"
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    filterset_fields = ["family", "enabled"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.instance = lora_register(**serializer.validated_data)


@registry_detail_schema(LoraAdapterSerializer, "LoRA adapter", LORA_EXAMPLE, {"default_scale": 0.6})
class LoraDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = LoraAdapterSerializer
    permission_classes = [IsStaffOrReadOnly]
    queryset = LoraAdapter.objects.all()
    lookup_field = "name"

    def perform_update(self, serializer: BaseSerializer) -> None:
        serializer.instance = lora_update(adapter=serializer.instance, **serializer.validated_data)
