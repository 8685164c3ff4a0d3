"""Webhook delivery, pinned to the address that was checked.

The URL was checked when the job was submitted, but a name can resolve elsewhere later (DNS
rebinding: public at submission, 127.0.0.1 or 169.254.169.254 at delivery). So each delivery
resolves the host once, refuses it when any address is not global (unless WEBHOOK_ALLOW_PRIVATE),
and connects to that checked address itself: no second lookup happens. The Host header keeps the
name, and for https the TLS handshake sends it as SNI and verifies the certificate against it.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

import certifi
import urllib3
from celery import shared_task
from django.conf import settings

from image_model_domain.models import GenerationJob
from image_model_domain.webhooks import (
    SIGNATURE_HEADER,
    Resolver,
    WebhookForbidden,
    webhook_addresses,
    webhook_body,
    webhook_sign,
)

logger = logging.getLogger(__name__)

TIMEOUT = urllib3.Timeout(connect=5, read=10)


class WebhookRefused(Exception):
    """The receiver answered with an error status."""


def webhook_post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    resolve: Resolver | None = None,
    ca_certs: str | None = None,
) -> int:
    """POST body to url, connecting to a checked address of its host; returns the status (no redirects)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WebhookForbidden(f"Not an http(s) URL: {url!r}")
    https = parsed.scheme == "https"
    port = parsed.port or (443 if https else 80)
    addresses = webhook_addresses(parsed.hostname, port, resolve=resolve)
    host_header = parsed.netloc.rsplit("@", 1)[-1]
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    last_error: Exception | None = None
    for address in addresses:  # every one was checked; try them in the resolver's order
        if https:
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                address,
                port,
                server_hostname=parsed.hostname,  # SNI
                assert_hostname=parsed.hostname,  # the certificate must name the host, not the IP
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs or certifi.where(),
                timeout=TIMEOUT,
                retries=False,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=TIMEOUT, retries=False)
        try:
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                assert_same_host=False,
            )
            return response.status
        except urllib3.exceptions.NewConnectionError as error:
            last_error = error
        finally:
            pool.close()
    raise last_error or urllib3.exceptions.HTTPError(f"no address of {parsed.hostname} answered")


@shared_task(
    name="tasks.webhooks.deliver_webhook",
    autoretry_for=(urllib3.exceptions.HTTPError, OSError, WebhookRefused),
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
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: webhook_sign(body)}
    try:
        status = webhook_post(job.webhook_url, body, headers)
    except WebhookForbidden as error:  # not retried: the target is not one we may call
        logger.warning("webhook of job %s not delivered: %s", job_id, error)
        return 0
    if status >= 400:
        raise WebhookRefused(f"{job.webhook_url} answered {status}")
    return status
