"""Webhooks: an optional URL per job, called once the job reaches a final status."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from image_model_domain.sources import error_for_owner

DELIVER_TASK = "tasks.webhooks.deliver_webhook"
SIGNATURE_HEADER = "X-Diffusion-Signature"


def webhook_url_check(url: str, *, field: str = "webhook_url") -> None:
    """Refuse loopback, private and link-local targets unless WEBHOOK_ALLOW_PRIVATE is set."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError({field: "Use an http or https URL."})
    try:
        port = parsed.port
    except ValueError:  # URLValidator lets any 1-5 digit port through, e.g. 99999
        raise ValidationError({field: "The port must be between 0 and 65535."}) from None
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, port or 443)}
    except (socket.gaierror, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a label over 63 bytes)
        raise ValidationError({field: f"The host {parsed.hostname!r} does not resolve."}) from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise ValidationError({field: f"The host {parsed.hostname!r} is a private or loopback address."})


def webhook_sign(body: bytes) -> str:
    return "sha256=" + hmac.new(settings.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def webhook_payload(job: Any) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "seed": job.seed,
        "error": error_for_owner(job.error),  # the receiver is the owner's, not staff
        "images": [str(pk) for pk in job.images.order_by("index").values_list("pk", flat=True)],
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def webhook_body(job: Any) -> bytes:
    return json.dumps(webhook_payload(job), sort_keys=True).encode()


def webhook_schedule(*, job_id: Any) -> None:
    from image_model_domain.models import GenerationJob

    if not GenerationJob.objects.filter(pk=job_id).exclude(webhook_url="").exists():
        return

    def send() -> None:
        from config.celery_app import app

        app.send_task(DELIVER_TASK, args=[str(job_id)], queue=settings.WEBHOOK_QUEUE)

    transaction.on_commit(send)
