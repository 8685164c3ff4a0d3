"""Registry changes reach running workers: every worker gets a copy of `sync_registry` (a
broadcast queue) and loads, reloads or drops pipelines and adapters to match the database.
Only a new image needs a rollout; registering, enabling, disabling or preloading does not.
"""

from __future__ import annotations

import importlib.util
import logging

from celery import shared_task
from celery.signals import celeryd_after_setup
from django.conf import settings

from image_model_domain.models import DLModel, LoraAdapter
from tasks.specs import engine, model_spec

logger = logging.getLogger(__name__)


def _spec_or_none(row: DLModel):  # noqa: ANN202
    try:
        return model_spec(row)
    except ValueError as error:  # a source outside MODEL_ROOT: never loaded
        logger.warning("not loading %s: %s", row.name, error)
        return None


@shared_task(name="tasks.registry.sync_registry", ignore_result=True, acks_late=False)
def sync_registry() -> dict[str, list[str]]:
    runner = engine()
    rows = {model.name: model for model in DLModel.objects.all()}
    dropped, loaded = [], []
    for name, resident in list(runner.pipelines.models.items()):
        row = rows.get(name)
        if row is None or not row.enabled or _spec_or_none(row) != resident.spec:
            runner.pipelines.evict(name)
            dropped.append(name)
    adapters = {adapter.name: adapter for adapter in LoraAdapter.objects.all()}
    for resident in runner.pipelines.models.values():
        for name, lora in list(resident.loras.items()):
            row = adapters.get(name)
            if row is None or not row.enabled or row.weight_name != lora.weight_name:
                runner.loras.drop(resident, name)
                dropped.append(f"{resident.spec.name}:{name}")
    if settings.DIFFUSION_PRELOAD:
        for row in rows.values():
            if row.enabled and row.preload and row.name not in runner.pipelines.models:
                spec = _spec_or_none(row)
                if spec is None:
                    continue
                runner.pipelines.get(spec)
                loaded.append(row.name)
    logger.info("registry synced: loaded %s, dropped %s", loaded or "nothing", dropped or "nothing")
    return {"loaded": loaded, "dropped": dropped}


@celeryd_after_setup.connect
def consume_registry_broadcasts(sender: str, instance, **kwargs: object) -> None:  # noqa: ANN001
    if importlib.util.find_spec("torch") is None:
        return  # a light worker (webhooks, reconciler) on the web image holds no pipelines
    # Note: add the Broadcast queue object itself (a per-worker queue on a fanout exchange); its
    # name alone would make a plain queue that only one worker consumes.
    broadcast = next(queue for queue in settings.CELERY_TASK_QUEUES if queue.alias == settings.REGISTRY_BROADCAST_QUEUE)
    instance.app.amqp.queues.select_add(broadcast)
