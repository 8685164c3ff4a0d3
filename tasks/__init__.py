"""Thin Celery tasks. They import torch and diffusers lazily, inside the worker process only."""

from tasks import generation, reconcile, webhooks

__all__ = ["generation", "reconcile", "webhooks"]
