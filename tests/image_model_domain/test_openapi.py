"""The OpenAPI schema: it validates without warnings, and the service keeps to it under generated requests.

test_schemathesis_finds_nothing_with_all_checks runs `st run --checks all` (the schemathesis CLI) against the live
test server with a staff bearer token: no 5xx, no undocumented status or content type, no response that breaks its
schema, valid requests accepted and invalid ones refused, auth enforced where the schema says, deleted objects
gone. Jobs it submits go to a queue of this session that no worker reads (deleted afterwards).
schemathesis_hooks.py fills in registered names for requests generated as valid.
test_what_schemathesis_found_stays_fixed keeps the bugs it found fixed, deterministically.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from dataset_domain.models import Dataset
from image_model_domain.models import DLModel, GenerationJob, LoraAdapter
from tests.conftest import ROOT, session_queue

MAX_EXAMPLES = 5


def test_the_schema_validates_without_warnings(tmp_path) -> None:  # noqa: ANN001
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    assert "/api/v1/generations/" in schema and "Error:" in schema


LONG_LABEL_HOST = "\u00e9" * 60 + ".com"  # IDNA cannot encode it: over 63 bytes as a label


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "body", "format_", "status", "field", "message"),
    [
        # ?limit= beyond bigint reached PostgreSQL: 500. Now capped at the pagination's max_limit.
        pytest.param(
            "get", "/api/v1/models/?limit=2474221465061077758603427840", None, None, 200, None, None, id="limit"
        ),
        # A form field held JSON text, so "null" passed allow_null=False and hit the NOT NULL column: 500.
        # Registry writes are JSON only now; null there is refused as null.
        pytest.param(
            "post", "/api/v1/models/", {"name": "m", "source": "x", "metadata": None}, "json", 400, "metadata",
            None, id="metadata-null",
        ),
        # A form is image-to-image only; "null" in a part is no value, never the prompt "null".
        pytest.param(
            "post", "/api/v1/generations/", {"prompt": "null", "init_image": ""}, "multipart", 400, "prompt",
            "This field may not be null.", id="multipart-null",
        ),
        # jsonb cannot hold NUL: 500.
        pytest.param(
            "post", "/api/v1/models/", {"name": "m", "source": "x", "metadata": {"a": "\x00"}}, "json", 400,
            "metadata", None, id="metadata-nul",
        ),
        # A webhook port over 65535 passes URLValidator; urlparse's .port raised ValueError: 500.
        pytest.param(
            "post", "/api/v1/generations/", {"prompt": "a", "webhook_url": "http://example.com:99999/"}, "json", 400,
            "webhook_url", None, id="webhook-port",
        ),
        # getaddrinfo raised UnicodeError for it: 500.
        pytest.param(
            "post", "/api/v1/generations/", {"prompt": "a", "webhook_url": f"http://{LONG_LABEL_HOST}/"}, "json", 400,
            "webhook_url", None, id="webhook-idna",
        ),
        # Errors of list items were nested objects ({"0": {"name": [...]}}), not the documented {field: [str]}.
        pytest.param(
            "post", "/api/v1/generations/", {"prompt": "a", "loras": [{"scale": 1}]}, "json", 400, "loras",
            "0.name: This field is required.", id="nested-errors",
        ),
        pytest.param(
            "post", "/api/v1/random-diffusions/", {"dataset": 1, "prompt_list": ["a", "b" * 1001]}, "json", 400,
            "prompt_list", "1: Ensure this field has no more than 1000 characters.", id="list-item-errors",
        ),
        # Over DATA_UPLOAD_MAX_NUMBER_FIELDS form fields: Django's HTML 400 page, not the API's JSON error.
        pytest.param(
            "post", "/api/v1/generations/", {"prompt": "a", "loras": ["[]"] * 1001}, "multipart", 400, None,
            None, id="too-many-fields",
        ),
        # --checks all: unreadable paging and filters were ignored (every row served), not refused.
        pytest.param("get", "/api/v1/models/?offset=abc", None, None, 400, "offset", None, id="offset-type"),
        pytest.param("get", "/api/v1/models/?enabled=maybe", None, None, 400, "enabled", None, id="boolean-filter"),
        pytest.param("get", "/api/v1/images/?job=", None, None, 400, "job", None, id="empty-uuid-filter"),
        # A path its route refuses was Django's HTML 404 page; the API answers JSON everywhere.
        pytest.param("get", "/api/v1/jobs/not-a-uuid/", None, None, 404, None, None, id="json-404"),
        pytest.param("post", "/api/v1/queue/", {}, "json", 405, None, None, id="json-405"),
        # JSON types as the schema says: DRF read 0 as the text "0" and false as the number 0.
        pytest.param(
            "post", "/api/v1/random-diffusions/", {"dataset": 1, "prompt_list": [0]}, "json", 400, "prompt_list",
            "0: Expected text, got int.", id="list-item-type",
        ),
        pytest.param(
            "post", "/api/v1/random-diffusions/", {"dataset": 1, "prompt_list": ["a"], "guidance_scale": False},
            "json", 400, "guidance_scale", None, id="bool-as-number",
        ),
        pytest.param(
            "post", "/api/v1/models/", {"name": "m", "source": "x", "metadata": []}, "json", 400, "metadata",
            "Must be a JSON object.", id="metadata-object",
        ),
        # A valid request that names a taken name is a conflict (409), not invalid input.
        pytest.param(
            "post", "/api/v1/models/", {"name": "tiny-sd-a", "source": "x"}, "json", 409, None, None, id="taken-409",
        ),
    ],
)  # fmt: skip
def test_what_schemathesis_found_stays_fixed(
    method: str, url: str, body: Any, format_: str | None, status: int, field: str | None, message: str | None
) -> None:
    from rest_framework.test import APIClient

    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(User.objects.create_user("root", is_staff=True))
    response = getattr(client, method)(url, body, format=format_) if body is not None else client.get(url)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json", response.content
    data = response.json()
    if status >= 400:
        assert isinstance(data["detail"], str)
        errors = data.get("errors", {})
        assert all(isinstance(m, str) for messages in errors.values() for m in messages), data
        if field:
            assert field in errors, data
        if message:
            assert message in errors[field], data
    assert not GenerationJob.objects.exists()


@pytest.fixture
def offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook URLs are checked by resolving their host; with no network, a name can take the resolver's 5 s
    timeout to fail. Here IP literals resolve as they are and every name to one public address."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host = "93.184.215.14"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# Sequences reset: the schema's examples name dataset 1, which the fixture's dataset is only in a fresh database.
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_schemathesis_finds_nothing_with_all_checks(
    live_server,  # noqa: ANN001
    dev_models: None,
    sample_dataset,  # noqa: ANN001
    settings,  # noqa: ANN001
    offline_dns: None,
    tmp_path,  # noqa: ANN001
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.API_SUBMISSION_RATE = "100000/minute"
    settings.API_MAX_QUEUED_JOBS_PER_USER = 100_000
    settings.JOB_EVENTS_MAX_S = 1  # a queued job's event stream would otherwise stay open for its full life
    queue = session_queue("schemathesis-nowhere")
    settings.DIFFUSION_DEFAULT_QUEUE, settings.DIFFUSION_MODEL_QUEUES = queue, {}
    staff = User.objects.create_user("schemathesis", is_staff=True)
    state = {
        "models": list(DLModel.objects.filter(enabled=True, family="sd1").values_list("name", flat=True)),
        "loras": list(LoraAdapter.objects.filter(enabled=True).values_list("name", flat=True)),
        "dataset": sample_dataset.pk,
        "images": list(sample_dataset.images.values_list("pk", flat=True)),
        "scratch_dataset": Dataset.objects.create(name="scratch").pk,
        "scratch_model": DLModel.objects.create(name="scratch-model", source="x/scratch", resolution=64).name,
        "scratch_lora": LoraAdapter.objects.create(
            name="scratch-lora", source="x/scratch", weight_name="lora.safetensors"
        ).name,
    }
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{live_server.url}/api/schema/?format=json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "20261123", "--generation-deterministic",
        # The API refuses NUL characters in text everywhere (400); the schema's strings do not say so.
        "--generation-allow-x00", "false",
        "--header", f"Authorization: Bearer {Token.objects.create(user=staff).key}",
        # One worker: concurrent threads trip a CPython 3.11 bug in ast.parse inside hypothesis (SystemError:
        # AST constructor recursion depth mismatch), a runtime error of the tool, not a finding.
        "--workers", "1", "--no-color", "--suppress-health-check", "all", "--request-timeout", "30",
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.image_model_domain.schemathesis_hooks",
        "DIFFUSION_ST_STATE": json.dumps(state),
    }
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
    assert result.returncode == 0, result.stdout[-30000:] + result.stderr[-3000:]
    assert GenerationJob.objects.filter(kind="text_to_image").exists(), result.stdout[-5000:]
    assert GenerationJob.objects.filter(kind="image_to_image").exists(), result.stdout[-5000:]
