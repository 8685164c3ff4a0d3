"""Who may see which jobs and images, and who (user and address) a request comes from."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.request import Request

from image_model_domain.selectors import visible_to_user


def visible_to(request: Request, queryset: QuerySet) -> QuerySet:
    """The jobs or images of `queryset` the request's user may see (selectors.visible_to_user)."""
    return visible_to_user(request.user, queryset)


def owner_of(request: Request) -> Any:
    return request.user if request.user.is_authenticated else None


def client_ip_of(request: Request) -> str | None:
    """The client's address: REMOTE_ADDR, or X-Forwarded-For where REMOTE_ADDR is a trusted proxy.

    X-Forwarded-For is read from the right (each proxy appends the address it saw), skipping
    trusted proxies; the first address that is not one is the client. Untrusted senders' headers
    are ignored, so a client cannot choose the address its anonymous cap is counted against.
    """
    trusted = settings.API_TRUSTED_PROXIES

    def parsed(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(value.strip())
        except ValueError:
            return None

    address = parsed(request.META.get("REMOTE_ADDR", ""))
    if address is None:
        return None
    forwarded = [parsed(item) for item in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if item.strip()]
    for hop in reversed(forwarded):
        if not any(address in network for network in trusted):
            break
        if hop is None:  # a garbled entry: stop at the last address a trusted proxy vouched for
            break
        address = hop
    return str(address)
