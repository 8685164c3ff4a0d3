"""The web pages in a real browser: Playwright drives Debian's Chromium against the live test server.

Jobs run on the suite's real Celery worker; each test saves screenshots of its pages to docs/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from image_model_domain.jobs import job_cancel, job_create_generation
from image_model_domain.models import GeneratedImage, GenerationJob
from tests.conftest import ROOT, session_queue, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
JOB_TIMEOUT_MS = 180_000  # the first job of a session also loads the pipeline, on a slow shared CPU
PROMPTS = ["a lighthouse at dusk", "a bowl of ramen", "a fox in snow"]
SAMPLE_PNG = ROOT / "fixtures" / "media" / "datasets" / "sample" / "glass-orbs.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does).")
    with pytest.MonkeyPatch.context() as patch:
        # Note: Playwright's sync API keeps an event loop running in this thread, and Django refuses
        # sync database calls from a thread with a running loop; the tests' own queries are plain sync code.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def open_page(browser: Browser, live_server) -> Iterator[Callable[..., Page]]:  # noqa: ANN001
    """open_page(width=, height=) -> a fresh page on the live server; fails the test on any JavaScript error."""
    contexts, errors = [], []

    def open_(*, width: int = 1200, height: int = 800) -> Page:
        context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    return open_page()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.mark.worker
def test_it_generates_shows_the_seed_and_the_library_opens_reuses_and_deletes(page, celery_worker, dev_models) -> None:  # noqa: ANN001
    page.goto("/")
    page.select_option("#model", "tiny-sd-a")
    page.get_by_label("Prompt", exact=True).fill("a red fox in the snow")
    page.get_by_label("Images").fill("2")
    page.get_by_label("Steps").fill("4")
    page.select_option("#lora_1", "tiny-lora-ink")
    page.locator("#lora_1_scale").fill("0.8")
    page.get_by_role("button", name="Generate").click()

    expect(page.locator("#job-status")).to_contain_text("Finished: 2 images", timeout=JOB_TIMEOUT_MS)
    job = GenerationJob.objects.get()
    assert job.status == "succeeded" and job.params["steps"] == 4
    assert job.params["loras"] == [{"name": "tiny-lora-ink", "scale": 0.8}]
    expect(page.locator("#job-seed")).to_contain_text(f"Seed used: {job.seed}")
    expect(page.locator("#job-images img")).to_have_count(2)
    screenshot(page, "generate")

    page.goto("/library/")
    group = page.locator(f'[data-job="{job.pk}"]')
    expect(group.locator("[data-image]")).to_have_count(2)
    expect(group).to_contain_text("a red fox in the snow")
    expect(group).to_contain_text("tiny-lora-ink × 0.8")
    expect(group).to_contain_text(f"seed {job.seed}")
    expect(group).to_contain_text("took")
    screenshot(page, "library")

    first = GeneratedImage.objects.get(job=job, index=0)
    card = page.locator(f'[data-image="{first.pk}"]')
    card.get_by_role("button", name="View image 1 full size").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth === 64")
    screenshot(page, "library-full-size")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    download = page.request.get(card.get_by_role("link", name="Download").get_attribute("href"))
    assert download.status == 200 and download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment")

    card.get_by_role("link", name="Use these settings again").click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a red fox in the snow")
    expect(page.locator("#seed")).to_have_value(str(first.seed))
    expect(page.locator("#lora_1")).to_have_value("tiny-lora-ink")
    page.go_back()

    path = Path(first.file.path)
    assert path.is_file()
    card.get_by_role("button", name="Delete").click()
    page.locator("#confirm-delete").get_by_role("button", name="Keep it").click()
    expect(card).to_be_visible()
    card.get_by_role("button", name="Delete").click()
    page.locator("#confirm-delete").get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    expect(page.locator("#library-status")).to_contain_text("deleted")
    assert not GeneratedImage.objects.filter(pk=first.pk).exists()
    assert not path.exists()
    assert GeneratedImage.objects.filter(job=job).count() == 1


@pytest.mark.worker
def test_it_runs_a_random_diffusion_and_lists_each_drawn_prompt_and_model(
    page,
    celery_worker,
    dev_models,
    sample_dataset,  # noqa: ANN001
) -> None:
    page.goto("/random/")
    page.select_option("#dataset", str(sample_dataset.pk))
    page.get_by_label("Prompts").fill("\n".join(PROMPTS))
    page.get_by_label("tiny-sd-a").check()
    page.get_by_label("tiny-sd-b").check()
    page.get_by_label("Steps").fill("4")
    page.get_by_role("button", name="Start random diffusion").click()

    expect(page.locator("#job-status")).to_contain_text("Finished: 10 images", timeout=JOB_TIMEOUT_MS)
    job = GenerationJob.objects.get()
    assert job.kind == "random_diffusion" and job.params["models"] == ["tiny-sd-a", "tiny-sd-b"]
    items = page.locator("#plan > li")
    expect(items).to_have_count(10)
    expect(page.locator('#plan > li[data-state="done"] a img')).to_have_count(10)
    for image in GeneratedImage.objects.filter(job=job):
        item = page.locator(f'#plan > li[data-index="{image.index}"]')
        assert image.prompt in PROMPTS and image.model_name in {"tiny-sd-a", "tiny-sd-b"}
        expect(item.locator(".drawn-prompt")).to_have_text(image.prompt)
        expect(item.locator(".drawn-model")).to_have_text(image.model_name)
    screenshot(page, "random")


@pytest.mark.worker
def test_it_cancels_a_queued_and_a_running_job_from_the_queue_page(page, celery_worker, dev_models) -> None:  # noqa: ANN001
    quick = job_create_generation(owner=None, model_name="tiny-sd-a", prompt="a quick job", steps=2)
    assert wait_for_job(quick.pk, worker=celery_worker).status == "succeeded"  # the queue's time per image
    long = {"owner": None, "model_name": "tiny-sd-a", "steps": 150, "num_images": 8}
    running = job_create_generation(prompt="a very long job", **long)
    waiting = job_create_generation(prompt="a job that waits behind it", **long)
    try:
        page.goto("/queue/")
        running_row = page.locator(f'#queue-list [data-job="{running.pk}"]')
        waiting_row = page.locator(f'#queue-list [data-job="{waiting.pk}"]')
        expect(running_row.locator("[data-status]")).to_have_text("running", timeout=JOB_TIMEOUT_MS)
        expect(running_row).to_contain_text(re.compile(r"step [1-9]\d* of 1200"), timeout=60_000)
        expect(waiting_row).to_contain_text("#1")
        # The shared worker's heartbeat row comes back within WORKER_HEARTBEAT_INTERVAL_S of the last
        # test's table flush; the page's next queue refresh then shows the estimate.
        expect(waiting_row).to_contain_text(re.compile(r"Starts in about \d"), timeout=20_000)
        expect(waiting_row.locator("[data-status]")).to_have_text("queued")
        screenshot(page, "queue")

        waiting_row.get_by_role("button", name=re.compile("^Cancel")).click()
        expect(page.locator("#queue-status")).to_have_text(f"Job {str(waiting.pk)[:8]} cancelled.")
        expect(waiting_row).to_have_count(0)
        running_row.get_by_role("button", name=re.compile("^Cancel")).click()
        expect(page.locator("#queue-status")).to_have_text(f"Job {str(running.pk)[:8]} cancelled.", timeout=30_000)
        expect(running_row).to_have_count(0)
        expect(page.locator("#queue-empty")).to_be_visible()
        expect(page.locator(f'#recent-list [data-job="{running.pk}"]')).to_contain_text("cancelled")
    finally:
        for job in (running, waiting):
            job_cancel(job=job)  # never leave the shared worker busy for the next tests
    assert {job.status for job in GenerationJob.objects.filter(pk__in=[running.pk, waiting.pk])} == {"cancelled"}
    running.refresh_from_db()
    assert running.progress_step < running.progress_total


def test_it_lists_the_registry_explains_api_errors_and_fits_a_phone(open_page, dev_models, sample_dataset) -> None:  # noqa: ANN001
    page = open_page()
    page.goto("/models/")
    for name in ("tiny-sd-a", "tiny-sd-b"):
        expect(page.locator("#models-table")).to_contain_text(name)
    for name in ("tiny-lora-ink", "tiny-lora-glow"):
        expect(page.locator("#loras-table")).to_contain_text(name)
    expect(page.get_by_role("link", name="admin", exact=True)).to_have_attribute("href", "/admin/")
    screenshot(page, "models")

    page.goto("/")
    page.select_option("#model", "tiny-sd-a")
    page.get_by_label("Prompt", exact=True).fill("a crooked size")
    page.get_by_label("Width").fill("65")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#form-error")).to_contain_text("Width: Must be a multiple of 8.")
    expect(page.get_by_label("Width")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#width-error")).to_have_text("Must be a multiple of 8.")
    assert not GenerationJob.objects.exists()

    phone = open_page(width=390, height=844)
    phone.goto("/library/")
    expect(phone.locator("#library-status")).to_contain_text("No images yet")
    phone.goto("/")
    expect(phone.locator("#model")).to_have_value("tiny-sd-a")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "generate-phone")
    phone.keyboard.press("Tab")
    expect(phone.locator(".skip-link")).to_be_focused()
    phone.keyboard.press("Enter")
    phone.keyboard.press("Tab")
    expect(phone.get_by_label("Prompt", exact=True)).to_be_focused()


def test_it_asks_for_a_login_when_anonymous_use_is_off_and_staff_upload_images(
    open_page,
    settings,
    django_user_model,
    sample_dataset,  # noqa: ANN001
) -> None:
    settings.API_ALLOW_ANONYMOUS = False
    django_user_model.objects.create_user("ada", password="a long enough password", is_staff=True)
    page = open_page()
    page.goto("/datasets/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/datasets/$"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    screenshot(page, "login")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/datasets/$"))
    expect(page.locator(".account")).to_contain_text("ada")

    page.get_by_label("Name").fill("uploads")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.locator("#datasets-status")).to_have_text("Dataset uploads created.")
    expect(page.locator("#upload-dataset option:checked")).to_have_text("uploads")
    page.get_by_label("Images").set_input_files([SAMPLE_PNG, ROOT / "pyproject.toml"])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#datasets-status")).to_have_text("1 of 2 images added.")
    expect(page.locator("#dataset-upload [data-error]")).to_contain_text("pyproject.toml")
    expect(page.locator('[data-dataset="uploads"]')).to_contain_text("1 image")
    expect(page.locator('[data-dataset="uploads"] img')).to_have_count(1)
    # The thumbnail is read through the API (no /media/): it must actually load.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-dataset="uploads"] img')]
            .every((img) => img.complete && img.naturalWidth > 0)"""
    )
    screenshot(page, "datasets")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_the_generate_button_is_ready_again_after_a_submit_so_more_jobs_can_be_queued(
    page, dev_models, settings
) -> None:  # noqa: ANN001
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}  # the jobs stay queued
    page.goto("/")
    page.select_option("#model", "tiny-sd-a")
    page.get_by_label("Steps").fill("4")
    button = page.get_by_role("button", name="Generate")
    try:
        for number, prompt in enumerate(["a first fox", "a second fox"], start=1):
            page.get_by_label("Prompt", exact=True).fill(prompt)
            button.click()
            expect(page.locator("#job-status")).to_contain_text("Queued")
            expect(button).to_be_enabled()  # while the job just sent waits or runs
            assert GenerationJob.objects.count() == number
        assert set(GenerationJob.objects.values_list("params__prompt", flat=True)) == {"a first fox", "a second fox"}
    finally:
        for job in GenerationJob.objects.all():
            job_cancel(job=job)


def test_the_datasets_page_count_matches_the_images_it_shows(page, sample_dataset) -> None:  # noqa: ANN001
    total = sample_dataset.images.count()
    assert total > 8  # more than the card's first row of thumbnails
    page.goto("/datasets/")
    card = page.locator('[data-dataset="sample"]')
    expect(card.locator("img.thumb")).to_have_count(8)
    expect(card.locator("[data-count]")).to_have_text(f"{total} images, the first 8 shown")
    card.get_by_role("button", name=f"Show all {total} images").click()
    expect(card.locator("img.thumb")).to_have_count(total)
    expect(card.locator("[data-count]")).to_have_text(f"{total} images")
