"""A client generated from the served schema works unedited.

openapi-python-client (pinned in requirements-dev.txt) generates a package from /api/schema/ of the live test
server into a temporary folder; with that package alone, as a bearer-token user, the test submits text-to-image
with two LoRAs, image-to-image with an init image and a random diffusion, polls each job to success on the real
Celery worker, and downloads a PNG.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.contrib.auth.models import User
from PIL import Image
from rest_framework.authtoken.models import Token

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

PACKAGE = "diffusion_server_api_client"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE_PNG = ROOT / "fixtures" / "media" / "datasets" / "sample" / "glass-orbs.png"


@pytest.fixture
def generated(live_server, tmp_path: Path) -> Iterator[ModuleType]:  # noqa: ANN001
    """The generated package, imported from a temporary folder (and forgotten afterwards)."""
    config = tmp_path / "config.yml"
    config.write_text("post_hooks: []\n")  # no ruff run over the generated code: the test needs speed, not style
    output = tmp_path / "client"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")), "generate",
            "--url", f"{live_server.url}/api/schema/?format=json",
            "--output-path", str(output), "--meta", "none", "--config", str(config),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # The generator leaves out what it cannot read (a wildcard content type such as image/*) and only warns.
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    output.rename(tmp_path / PACKAGE)
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def api(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.api.{name}")


def wait_until_finished(client: Any, job_id: Any, timeout: float = 120) -> Any:
    retrieve = api("api_v1_jobs_retrieve")
    deadline = time.monotonic() + timeout
    while True:
        job = retrieve.sync(id=job_id, client=client)
        if job.status.value in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status.value} after {timeout}s"
        time.sleep(0.1)


def init_png() -> bytes:
    buffer = io.BytesIO()
    Image.open(SAMPLE_PNG).convert("RGB").resize((64, 64)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.worker
def test_a_generated_client_submits_polls_and_downloads(
    generated: ModuleType,
    live_server,  # noqa: ANN001
    celery_worker,  # noqa: ANN001
    dev_models: None,
    sample_dataset,  # noqa: ANN001
) -> None:
    from diffusion_server_api_client import AuthenticatedClient
    from diffusion_server_api_client.models import (
        ImageToImageRequest,
        LoraChoiceRequest,
        RandomDiffusionInputRequest,
        TextToImageRequest,
    )
    from diffusion_server_api_client.types import File

    user = User.objects.create_user("client-user")
    client = AuthenticatedClient(base_url=live_server.url, token=Token.objects.create(user=user).key)
    create = api("api_v1_generations_create")

    text = create.sync_detailed(
        client=client,
        body=TextToImageRequest(
            prompt="a lighthouse at dusk",
            model="tiny-sd-a",
            steps=3,
            seed=42,
            loras=[LoraChoiceRequest(name="tiny-lora-ink", scale=0.8), LoraChoiceRequest(name="tiny-lora-glow")],
        ),
    )
    assert text.status_code == 202, text.content
    assert text.parsed.owner == "client-user"  # the bearer token was read, not taken as anonymous
    assert text.parsed.params["loras"] == [
        {"name": "tiny-lora-ink", "scale": 0.8},
        {"name": "tiny-lora-glow", "scale": 1.0},  # the adapter's default scale
    ]

    image = create.sync_detailed(
        client=client,
        body=ImageToImageRequest(
            prompt="a fox",
            init_image=File(payload=io.BytesIO(init_png()), file_name="init.png", mime_type="image/png"),
            model="tiny-sd-b",
            steps=4,
            strength=0.5,
            seed=7,
            loras=[LoraChoiceRequest(name="tiny-lora-glow", scale=0.5)],
        ),
    )
    assert image.status_code == 202, image.content
    assert image.parsed.kind.value == "image_to_image"
    assert image.parsed.params["loras"] == [{"name": "tiny-lora-glow", "scale": 0.5}]

    sources = list(sample_dataset.images.order_by("id").values_list("id", flat=True)[:2])
    random = api("api_v1_random_diffusions_create").sync_detailed(
        client=client,
        body=RandomDiffusionInputRequest(
            dataset=sample_dataset.pk, prompt_list=["a cat", "a dog"], image_ids=sources, steps=2, seed=5
        ),
    )
    assert random.status_code == 202, random.content

    jobs = [wait_until_finished(client, response.parsed.id) for response in (text, image, random)]
    assert [job.status.value for job in jobs] == ["succeeded"] * 3, [job.error for job in jobs]
    assert [len(job.images) for job in jobs] == [1, 1, 2]

    file = api("api_v1_images_file_retrieve").sync_detailed(id=jobs[1].images[0].id, client=client, download="1")
    assert file.status_code == 200
    payload = file.parsed.payload.read()
    assert payload.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(payload)).size == (64, 64)

    # The files a client may need back: the init image it sent, and a dataset image.
    init = api("api_v1_jobs_init_image_retrieve").sync_detailed(id=jobs[1].id, client=client)
    assert init.status_code == 200 and isinstance(init.parsed, File)
    sent = Image.open(io.BytesIO(init_png()))
    assert list(Image.open(init.parsed.payload).convert("RGB").getdata()) == list(sent.getdata())
    source = api("api_v1_datasets_images_file_retrieve").sync_detailed(
        id=sample_dataset.pk, image_pk=sources[0], client=client
    )
    assert source.status_code == 200 and source.parsed.payload.read().startswith(PNG_SIGNATURE)

    stranger = AuthenticatedClient(base_url=live_server.url, token="not-a-token")
    refused = api("api_v1_jobs_list").sync_detailed(client=stranger)
    assert refused.status_code == 401 and "Invalid token" in refused.parsed.detail
