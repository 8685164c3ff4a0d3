"""The submission throttle."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from image_model_domain.api.views.visibility import client_ip_of


class SubmissionThrottle(ScopedRateThrottle):
    """Per-user (per-IP when anonymous) limit on job submissions: API_SUBMISSION_RATE, e.g. 60/minute."""

    def get_rate(self) -> str:
        return settings.API_SUBMISSION_RATE

    def get_ident(self, request: Request) -> str:
        # DRF's own reading trusts any X-Forwarded-For, which would let a client pick its bucket.
        return client_ip_of(request) or super().get_ident(request)
