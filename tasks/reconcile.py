from __future__ import annotations

from celery import shared_task

from image_model_domain.lifecycle import jobs_reconcile


@shared_task(name="tasks.reconcile.reconcile_jobs", ignore_result=True)
def reconcile_jobs() -> dict[str, int]:
    """Periodic (celery beat): re-enqueue jobs the broker lost, re-run or fail orphaned ones."""
    return jobs_reconcile()
