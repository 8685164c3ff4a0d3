"""Hot reads served from the cache (django-redis in production), invalidated on change.

- Registry lists (models, LoRAs): keyed by a registry version that every save or delete of a row
  bumps (image_model_domain.models.registry_changed), so no stale list outlives a change.
- Finished jobs: their JSON is fixed once they end; the domain functions that change a finished
  job (delete, retry, deleting one of its images) drop its entry.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache

REGISTRY_VERSION_KEY = "api:registry-version"
TIMEOUT_S = 300


def registry_version() -> int:
    return cache.get_or_set(REGISTRY_VERSION_KEY, 1, timeout=None)


def registry_bump() -> None:
    try:
        cache.incr(REGISTRY_VERSION_KEY)
    except ValueError:  # not set yet (or evicted): any new value invalidates
        cache.set(REGISTRY_VERSION_KEY, 2, timeout=None)


def registry_list_key(kind: str, full_path: str) -> str:
    return f"api:{kind}:{registry_version()}:{full_path}"


def job_key(job_id: Any) -> str:
    return f"api:job:{job_id}"


def job_forget(job_id: Any) -> None:
    cache.delete(job_key(job_id))
