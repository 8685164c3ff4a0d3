"""The worker checks registry sources again before loading: rows written past the API load nothing outside."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from image_model_domain.jobs import job_create_generation
from image_model_domain.models import DLModel, LoraAdapter
from tests.conftest import wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_rows_slipped_in_by_hand_fail_their_jobs_without_loading(celery_worker, dev_models) -> None:  # noqa: ANN001
    alice = User.objects.create_user("alice")
    # Past the API's validators (a shell, an old row): the worker must refuse them itself.
    DLModel.objects.create(name="outside", source="/etc", resolution=64)
    # A single-file checkpoint's configs are read from metadata.config: held to the same confinement.
    DLModel.objects.create(
        name="outside-config", source="dev/tiny-sd-a", resolution=64, metadata={"config": "/etc/ssl"}
    )
    # A real escape: this weight_name would load another adapter's file from MODEL_ROOT.
    LoraAdapter.objects.create(
        name="traverse", source="dev/tiny-lora-glow", weight_name="../tiny-lora-ink/lora.safetensors", family="sd1"
    )
    outside = job_create_generation(owner=alice, model_name="outside", prompt="a fox", steps=2)
    traverse = job_create_generation(
        owner=alice, model_name="tiny-sd-a", prompt="a fox", steps=2, loras=[{"name": "traverse", "scale": 1.0}]
    )
    outside_config = job_create_generation(owner=alice, model_name="outside-config", prompt="a fox", steps=2)
    outside = wait_for_job(outside.pk, worker=celery_worker)
    outside_config = wait_for_job(outside_config.pk, worker=celery_worker)
    assert outside_config.status == "failed" and "config's source is not allowed" in outside_config.error
    assert not outside_config.images.exists()
    traverse = wait_for_job(traverse.pk, worker=celery_worker)
    assert outside.status == "failed" and "source is not allowed" in outside.error
    assert traverse.status == "failed" and "weight_name" in traverse.error
    assert not outside.images.exists() and not traverse.images.exists()
    owner = APIClient()
    owner.force_authenticate(alice)
    for job in (outside, traverse, outside_config):
        assert "/etc" not in owner.get(f"/api/v1/jobs/{job.pk}/").json()["error"]
