"""Thin Celery tasks. They import torch and diffusers lazily, inside the worker process only."""

from tasks import generation, metrics, presence, reconcile, registry, webhooks

__all__ = ["generation", "metrics", "presence", "reconcile", "registry", "webhooks"]
