"""Webhooks: an optional URL per job, called once the job reaches a final status."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from config.celery_app import app
from image_model_domain.models import GenerationJob
from image_model_domain.sources import error_for_owner

DELIVER_TASK = "tasks.webhooks.deliver_webhook"
SIGNATURE_HEADER = "X-Diffusion-Signature"


class WebhookForbidden(Exception):
    """The target resolves to a loopback, private or link-local address (and that is not allowed)."""


Resolver = Callable[..., list]


def webhook_addresses(host: str, port: int, *, resolve: Resolver | None = None) -> list[str]:
    """Resolve the host once; every address must be global unless WEBHOOK_ALLOW_PRIVATE is set.

    Raises socket.gaierror (or UnicodeError) when the name does not resolve, WebhookForbidden when
    any address is not global: a name with one public and one private address is refused whole.
    """
    answers = (resolve or socket.getaddrinfo)(host, port, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(info[4][0] for info in answers))
    if not addresses:
        raise socket.gaierror(f"{host} has no address")
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if not ipaddress.ip_address(address.split("%")[0]).is_global:
                raise WebhookForbidden(f"The host {host!r} is a private or loopback address.")
    return addresses


def webhook_url_check(url: str, *, field: str = "webhook_url") -> None:
    """Refuse loopback, private and link-local targets unless WEBHOOK_ALLOW_PRIVATE is set.

    Checked again at each delivery (the name may resolve elsewhere by then: DNS rebinding), where the
    connection goes to the address that was checked (tasks/webhooks.py).
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError({field: "Use an http or https URL."})
    try:
        port = parsed.port
    except ValueError:  # URLValidator lets any 1-5 digit port through, e.g. 99999
        raise ValidationError({field: "The port must be between 0 and 65535."}) from None
    try:
        parsed.hostname.encode("idna")  # a label over 63 bytes cannot be looked up or delivered to
    except UnicodeError:
        raise ValidationError({field: f"The host {parsed.hostname!r} is not a valid host name."}) from None
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        webhook_addresses(parsed.hostname, port or 443)
    except (socket.gaierror, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a label over 63 bytes)
        raise ValidationError({field: f"The host {parsed.hostname!r} does not resolve."}) from None
    except WebhookForbidden as error:
        raise ValidationError({field: str(error)}) from None


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
    if not GenerationJob.objects.filter(pk=job_id).exclude(webhook_url="").exists():
        return

    def send() -> None:
        app.send_task(DELIVER_TASK, args=[str(job_id)], queue=settings.WEBHOOK_QUEUE)

    transaction.on_commit(send)
