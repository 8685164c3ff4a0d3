"""The pages follow jobs through their event streams (EventSource), not by polling, in a real browser."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, Request, expect

from image_model_domain.jobs import job_cancel, job_create_generation
from image_model_domain.models import GenerationJob
from tests.web.test_pages_browser import JOB_TIMEOUT_MS, browser, open_page, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

RECORD_STATUS = """() => {
  window.statusTexts = [];
  const status = document.getElementById("job-status");
  new MutationObserver(() => window.statusTexts.push(status.textContent))
    .observe(status, { childList: true, subtree: true, characterData: true });
}"""


def api_requests(on: Page) -> list[str]:
    seen: list[str] = []

    def record(request: Request) -> None:
        if "/api/v1/" in request.url:
            seen.append(request.url)

    on.on("request", record)
    return seen


def test_the_generate_page_shows_progress_and_previews_from_the_stream(page: Page, celery_worker, dev_models) -> None:  # noqa: ANN001, F811
    seen = api_requests(page)
    page.goto("/")
    page.select_option("#model", "tiny-sd-a")
    page.get_by_label("Prompt", exact=True).fill("a red fox in the snow")
    page.get_by_label("Images").fill("2")
    page.get_by_label("Steps").fill("16")
    page.get_by_label("Show previews while it runs").check()
    page.evaluate(RECORD_STATUS)
    page.get_by_role("button", name="Generate").click()

    preview = page.locator("#job-previews img").first
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"), timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_contain_text("Finished: 2 images", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-previews")).to_be_hidden()
    expect(page.locator("#job-images img")).to_have_count(2)

    job = GenerationJob.objects.get()
    assert job.params["preview"] is True
    steps = {
        int(m.group(1)) for text in page.evaluate("window.statusTexts") if (m := re.search(r"step (\d+) of", text))
    }
    details = [url for url in seen if url.endswith(f"/api/v1/jobs/{job.pk}/")]
    assert [url for url in seen if url.endswith(f"/api/v1/jobs/{job.pk}/events/")], seen
    # The steps came from the stream: many shown, the job's JSON read only at the start, per image and at the end.
    assert len(steps) >= 8 and len(details) <= 4, (sorted(steps), details)


def test_the_queue_page_follows_the_running_job_through_its_stream(page: Page, celery_worker, dev_models) -> None:  # noqa: ANN001, F811
    running = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a long job", steps=150)
    try:
        seen = api_requests(page)
        page.goto("/queue/")
        row = page.locator(f'#queue-list [data-job="{running.pk}"]')
        expect(row).to_have_attribute("data-live", "stream", timeout=JOB_TIMEOUT_MS)
        assert [url for url in seen if url.endswith(f"/api/v1/jobs/{running.pk}/events/")]
        # The step shown changes between two reads of /api/v1/queue/: the stream carried it.
        detail, between_reads = row.locator("[data-detail]"), {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reads = len([url for url in seen if url.endswith("/api/v1/queue/")])
            step = re.search(r"step (\d+) of 150", detail.text_content() or "")
            if step:
                between_reads.setdefault(reads, set()).add(step.group(1))
            if any(len(steps) >= 3 for steps in between_reads.values()):
                break
            time.sleep(0.05)
        assert any(len(steps) >= 3 for steps in between_reads.values()), between_reads

        row.get_by_role("button", name=re.compile("^Cancel")).click()
        expect(row).to_have_count(0, timeout=30_000)  # the stream's final event takes it off the list at once
    finally:
        job_cancel(job=running)  # never leave the shared worker busy for the next tests
