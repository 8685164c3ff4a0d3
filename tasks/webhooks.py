from __future__ import annotations

import logging

import requests
from celery import shared_task
from django.conf import settings

from image_model_domain.models import GenerationJob
from image_model_domain.webhooks import SIGNATURE_HEADER, webhook_body, webhook_sign

logger = logging.getLogger(__name__)


class WebhookRefused(Exception):
    """The receiver answered with an error status."""


@shared_task(
    name="tasks.webhooks.deliver_webhook",
    autoretry_for=(requests.RequestException, WebhookRefused),
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=settings.WEBHOOK_MAX_ATTEMPTS - 1,
    ignore_result=True,
)
def deliver_webhook(job_id: str) -> int:
    job = GenerationJob.objects.filter(pk=job_id).first()
    if job is None or not job.webhook_url:
        return 0
    body = webhook_body(job)
    response = requests.post(
        job.webhook_url,
        data=body,
        timeout=10,
        allow_redirects=False,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: webhook_sign(body)},
    )
    if response.status_code >= 400:
        raise WebhookRefused(f"{job.webhook_url} answered {response.status_code}")
    return response.status_code
