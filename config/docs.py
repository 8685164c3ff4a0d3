"""Swagger UI and Redoc, served from this service alone.

Their scripts and styles come from drf-spectacular-sidecar's static files; Redoc's page drops drf-spectacular's
Google Fonts links; Swagger UI's start-up script is its own request (the split view), so no inline script runs.
A Content-Security-Policy of 'self' then keeps the one outside reference left in the bundles (Redoc's footer
logo on cdn.redoc.ly) from ever being fetched: nothing leaves the machine when someone reads the docs.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # Redoc's styled-components and Swagger UI set styles inline
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",  # Redoc indexes search in a worker built from a blob
        "connect-src 'self'",
        "frame-ancestors 'self'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)


class SelfContained:
    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


class SwaggerView(SelfContained, SpectacularSwaggerSplitView):
    pass


class RedocView(SelfContained, SpectacularRedocView):
    template_name = "docs/redoc.html"
