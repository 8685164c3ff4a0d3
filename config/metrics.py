"""Prometheus metrics for the web tier: /metrics, for scrapers holding METRICS_TOKEN.

Counters live in this process; under gunicorn set PROMETHEUS_MULTIPROC_DIR so that every worker
process writes to it and a scrape sums them (prometheus_client's multiprocess mode). Job counts by
status are read from the database at scrape time, so they are right whichever process answers.

Access: with METRICS_TOKEN set, only `Authorization: Bearer <token>` (401 otherwise). Unset, the
endpoint is open in development and absent (404) in production, so that job counts and request
rates are never public by accident.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from image_model_domain.models import GenerationJob

HTTP_REQUESTS = Counter("diffusion_http_requests_total", "HTTP requests answered", ["method", "status"])
JOBS_CREATED = Counter("diffusion_jobs_created_total", "Generation jobs accepted", ["kind"])


class JobStatusCollector:
    def collect(self):  # noqa: ANN201
        family = GaugeMetricFamily("diffusion_jobs", "Generation jobs by status", labels=["status"])
        for row in GenerationJob.objects.values("status").annotate(count=Count("id")):
            family.add_metric([row["status"]], row["count"])
        yield family


def metrics_access_refused(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics; otherwise the answer to give (or Http404)."""
    token = settings.METRICS_TOKEN
    if not token:
        if settings.PRODUCTION:
            raise Http404("No metrics here.")
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    response = JsonResponse({"detail": "Send Authorization: Bearer <METRICS_TOKEN>."}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics(request: HttpRequest) -> HttpResponse:
    refused = metrics_access_refused(request)
    if refused is not None:
        return refused
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_REQUESTS)
        registry.register(JOBS_CREATED)
    registry.register(JobStatusCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        HTTP_REQUESTS.labels(request.method, str(response.status_code)).inc()
        return response
