"""Swagger UI and Redoc render in a real browser (Debian's Chromium) from this server alone: no request leaves it.

The one outside reference left in the bundles (Redoc's footer logo on cdn.redoc.ly) is stopped by the pages'
Content-Security-Policy before it is sent: Chromium reports it as a request that failed, blocked by the CSP.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests.web.test_pages_browser import browser  # noqa: F401  (the module's Chromium, shared fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock-summary-path >> text=/api/v1/generations/"),
        ("/redoc/", "h1 >> text=Diffusion Server API"),
    ],
)
def test_the_docs_render_with_no_request_outside_this_server(browser: Browser, live_server, path, rendered) -> None:  # noqa: ANN001, F811
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    requests, errors, blocked = [], [], set()
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: blocked.add(request.url) if request.failure == "csp" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path)
        expect(page.locator(rendered).first).to_be_visible(timeout=30_000)
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    here = urlsplit(live_server.url).netloc
    outside = [url for url in requests if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != here]
    assert not [url for url in outside if url not in blocked], outside
    assert any(url.endswith("/api/schema/") or "/api/schema/?" in url for url in requests), requests
    assert not errors, errors
