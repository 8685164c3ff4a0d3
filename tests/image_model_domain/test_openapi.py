"""The OpenAPI schema: it validates without warnings, and the service keeps to it under generated requests.

test_the_api_keeps_to_its_schema runs schemathesis against the live schema of the service itself (/api/schema/,
served in-process by config.wsgi.application) with a staff token, so registry writes are exercised as well as
reads: no 5xx, no undocumented status or content type, no response that breaks its schema. Each operation runs in
pytest-django's transaction (a `db` test): transaction.on_commit never fires there, so no job is ever handed to a
worker, and the rows the generated requests make accumulate until that operation's rollback.
test_what_schemathesis_found_stays_fixed keeps the bugs it found fixed, deterministically.
"""

from __future__ import annotations

import io
import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck
from hypothesis import strategies as st
from PIL import Image
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from dataset_domain.models import Dataset
from image_model_domain.models import DLModel, GeneratedImage, GenerationJob, LoraAdapter
from tests.conftest import ROOT

MAX_EXAMPLES = 25
# What the hooks below need from the running test's rows; set by the service_state fixture.
STATE: dict[str, Any] = {}
# The documented contract. Not checked: negative_data_rejection and positive_data_acceptance (the schema cannot
# say that a model name must be registered, so "valid" bodies are refused with 400, which is documented), and the
# stateful checks (use_after_free and the like), which this in-transaction run cannot exercise honestly.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


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


def png(size: tuple[int, int] = (24, 16), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_job(owner: User, status: str, *, images: int = 0) -> GenerationJob:
    job = GenerationJob.objects.create(
        kind="text_to_image",
        owner=owner,
        status=status,
        params={"model": "tiny-sd-a", "prompt": "a fox"},
        seed=10,
        queue="schemathesis-nowhere",
        images_expected=max(images, 1),
        progress_total=4,
    )
    for index in range(images):
        image = GeneratedImage(
            job=job,
            index=index,
            prompt="a fox",
            model_name="tiny-sd-a",
            seed=10 + index,
            scheduler="euler",
            steps=4,
            guidance_scale=7.5,
            width=24,
            height=16,
            sha256="0" * 64,
        )
        image.file.save(f"{job.pk}-{index}.png", ContentFile(png()), save=False)
        image.save()
    return job


@pytest.fixture
def service_state(db: None, settings, tmp_path) -> Iterator[dict[str, Any]]:  # noqa: ANN001
    """Registry rows, the sample dataset, jobs and images, staff and user tokens; no submission throttle, no queue."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.API_SUBMISSION_RATE = "100000/minute"
    settings.DIFFUSION_DEFAULT_QUEUE = "schemathesis-nowhere"
    settings.DIFFUSION_MODEL_QUEUES = {}
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64, preload=True)
    DLModel.objects.create(name="tiny-sd-b", source="dev/tiny-sd-b", resolution=64)
    DLModel.objects.create(name="xl", source="x/xl", family="sdxl", resolution=1024)
    DLModel.objects.create(name="scratch-model", source="x/scratch", resolution=64)
    for name in ("ink", "glow", "scratch-lora"):
        LoraAdapter.objects.create(name=name, source=f"dev/{name}", weight_name="lora.safetensors")
    call_command("loaddata", str(ROOT / "fixtures" / "datasets.json"), verbosity=0)
    staff = User.objects.create_user("schemathesis", is_staff=True)
    queued, finished, doomed = (
        make_job(staff, "queued"),
        make_job(staff, "succeeded", images=2),
        make_job(staff, "failed"),
    )
    kept_image, doomed_image = finished.images.order_by("index")
    sample = Dataset.objects.get(name="sample")
    scratch = Dataset.objects.create(name="scratch")
    # Path parameters that name real rows, per operation; writes and deletes get rows nothing else needs.
    known = {
        ("POST", "/api/image_model_domain/v1/random_diffusion/{dataset_id}/initialize_diffusion/"): [
            {"dataset_id": sample.pk}
        ],
        ("GET", "/api/v1/datasets/{id}/"): [{"id": sample.pk}],
        ("GET", "/api/v1/datasets/{id}/images/"): [{"id": sample.pk}],
        ("POST", "/api/v1/datasets/{id}/images/"): [{"id": scratch.pk}],
        ("GET", "/api/v1/jobs/{id}/"): [{"id": str(finished.pk)}, {"id": str(queued.pk)}],
        ("DELETE", "/api/v1/jobs/{id}/"): [{"id": str(doomed.pk)}],
        ("POST", "/api/v1/jobs/{id}/cancel/"): [{"id": str(queued.pk)}, {"id": str(finished.pk)}],
        ("GET", "/api/v1/images/{id}/"): [{"id": str(kept_image.pk)}],
        ("GET", "/api/v1/images/{id}/file/"): [{"id": str(kept_image.pk)}],
        ("DELETE", "/api/v1/images/{id}/"): [{"id": str(doomed_image.pk)}],
        ("GET", "/api/v1/models/{name}/"): [{"name": "tiny-sd-a"}],
        ("PUT", "/api/v1/models/{name}/"): [{"name": "scratch-model"}],
        ("PATCH", "/api/v1/models/{name}/"): [{"name": "scratch-model"}],
        ("DELETE", "/api/v1/models/{name}/"): [{"name": "scratch-model"}],
        ("GET", "/api/v1/loras/{name}/"): [{"name": "ink"}],
        ("PUT", "/api/v1/loras/{name}/"): [{"name": "scratch-lora"}],
        ("PATCH", "/api/v1/loras/{name}/"): [{"name": "scratch-lora"}],
        ("DELETE", "/api/v1/loras/{name}/"): [{"name": "scratch-lora"}],
    }
    user = User.objects.create_user("schemathesis-user")
    tokens = {"staff": Token.objects.create(user=staff).key, "user": Token.objects.create(user=user).key}
    STATE.update(tokens=tokens, known=known, dataset=sample.pk)
    yield STATE
    STATE.clear()


@pytest.fixture
def no_connection_recycling() -> Iterator[None]:
    """Django's connection recycling off during requests, as django.test.Client does it.

    close_old_connections on request_started/finished would close the connection that holds the test's
    transaction (its autocommit is off), and with it every row the test made.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


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


def realistic_body(method: str, path: str) -> Callable[[Any], Any] | None:
    """Make a generated body more like a client's, so that success paths are exercised as well as refusals."""
    if (method, path) == ("POST", "/api/v1/generations/"):

        def fix(case: Any) -> Any:
            body = {key: value for key, value in case.body.items() if key not in ("width", "height")}
            body["model"] = "tiny-sd-a"
            if case.media_type == "multipart/form-data":
                body.pop("loras", None)
                body["init_image"] = png()
            else:
                body["loras"] = [{"name": "ink", "scale": 0.5}]
            case.body = body
            return case

        return fix
    if (method, path) == ("POST", "/api/v1/random-diffusions/"):

        def fix(case: Any) -> Any:
            drop = ("image_ids", "models")
            case.body = {**{k: v for k, v in case.body.items() if k not in drop}, "dataset": STATE["dataset"]}
            return case

        return fix
    if (method, path) == ("POST", "/api/v1/datasets/{id}/images/"):

        def fix(case: Any) -> Any:
            case.body = {**case.body, "image": png(color=(0, 0, 255))}
            return case

        return fix
    return None


# The live schema, as the service serves it (no database access: the schema view reads none).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
schema.config.generation.update(max_examples=MAX_EXAMPLES)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    """Half the time or so, name a real row: generated ids alone would only ever meet 404."""
    operation = context.operation
    real = STATE.get("known", {}).get((operation.method.upper(), operation.path), [])
    return st.sampled_from([path_parameters, *({**path_parameters, **item} for item in real)])


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy:
    fix = realistic_body(case.operation.method.upper(), case.operation.path)
    if fix is None or not STATE or not isinstance(case.body, dict):
        return st.just(case)
    return st.booleans().map(lambda realistic: fix(case) if realistic else case)


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the rows are made once per operation and shared by its examples
    ],
)
@pytest.mark.parametrize("caller", ["staff", "user", "anonymous"])
@pytest.mark.usefixtures("no_connection_recycling", "offline_dns")
def test_the_api_keeps_to_its_schema(case: Any, service_state: dict[str, Any], caller: str) -> None:
    """Staff exercise registry writes; a user meets 403 there and sees only their own work; anonymous, 401."""
    token = service_state["tokens"].get(caller)
    headers = {"Authorization": f"Token {token}"} if token else {}
    response = case.call(headers=headers)
    if response.status_code == 404 and not routed(response.request.path_url):
        # A path parameter that its route's converter refuses (null,null for a UUID): no API view answers,
        # Django's own plain 404 does. Outside the API's contract.
        return
    if response.status_code == 415 and sent_without_content_type(case):
        return
    case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"headers": headers})


def sent_without_content_type(case: Any) -> bool:
    """A multipart body that is not an object (a bare string, in negative cases) goes out raw with no Content-Type:
    schemathesis could give it no boundary. The service rightly answers 415; no documented request meets that."""
    return (case.media_type or "").startswith("multipart/") and not isinstance(case.body, dict)


def routed(url: str) -> bool:
    try:
        resolve(unquote(urlsplit(url).path))
    except Resolver404:
        return False
    return True
