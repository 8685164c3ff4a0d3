"""/metrics answers only a scraper with METRICS_TOKEN; without a token it is absent in production."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.config.test_settings_env import django_check

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"


def scrape(authorization: str | None = None):  # noqa: ANN201
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return APIClient().get("/metrics", **headers)


def test_with_a_token_only_the_bearer_reads_the_metrics(settings) -> None:  # noqa: ANN001
    settings.METRICS_TOKEN = TOKEN
    for refused in (None, "", "Bearer", "Bearer wrong-token", f"Token {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
        response = scrape(refused)
        assert response.status_code == 401, refused
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "diffusion_" not in response.content.decode()
    response = scrape(f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "diffusion_http_requests_total" in response.content.decode()
    settings.PRODUCTION = True  # a token works the same in production
    assert scrape(f"bearer {TOKEN}").status_code == 200 and scrape().status_code == 401


def test_without_a_token_it_is_absent_in_production_and_open_in_development(settings) -> None:  # noqa: ANN001
    settings.METRICS_TOKEN = ""
    settings.PRODUCTION = True
    assert scrape().status_code == 404
    assert scrape("Bearer anything").status_code == 404
    settings.PRODUCTION = False
    assert scrape().status_code == 200


def test_a_short_token_stops_start_up(tmp_path) -> None:  # noqa: ANN001
    result = django_check({"VAR_DIR": str(tmp_path), "METRICS_TOKEN": "short"})
    assert result.returncode != 0 and "METRICS_TOKEN" in result.stderr
