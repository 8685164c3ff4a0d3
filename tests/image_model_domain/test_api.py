"""The REST API: success and error paths, permissions, validation at its boundaries."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from image_model_domain.jobs import job_cancel
from image_model_domain.models import DLModel, GenerationJob, LoraAdapter
from tests.conftest import queue_history_of_a_tenth_of_a_second_a_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def models(db: None) -> None:
    DLModel.objects.create(name="tiny-sd-a", source="dev/tiny-sd-a", resolution=64)
    DLModel.objects.create(name="off", source="dev/off", resolution=64, enabled=False)
    DLModel.objects.create(name="xl", source="x/xl", family="sdxl", resolution=1024)
    LoraAdapter.objects.create(name="ink", source="dev/ink", weight_name="lora.safetensors")
    LoraAdapter.objects.create(name="glow", source="dev/glow", weight_name="lora.safetensors")
    LoraAdapter.objects.create(name="third", source="dev/third", weight_name="lora.safetensors")


def user(name: str, *, staff: bool = False) -> APIClient:
    account = User.objects.create_user(name, password="pw-" + name, is_staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=account).key}")
    return client


def png(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_it_accepts_a_generation_with_202_location_and_the_seed(api: APIClient, models: None) -> None:
    response = api.post(
        "/api/v1/generations/",
        {"prompt": "a fox", "model": "tiny-sd-a", "seed": 7, "num_images": 2, "loras": [{"name": "ink", "scale": 0.5}]},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"].endswith(f"/api/v1/jobs/{body['id']}/")
    assert body["status"] == "queued" and body["seed"] == 7 and body["position"] == 1
    job = GenerationJob.objects.get(pk=body["id"])
    assert job.params["loras"] == [{"name": "ink", "scale": 0.5}]
    assert (job.params["width"], job.params["height"]) == (64, 64)
    assert job.images_expected == 2


def test_it_records_a_random_seed_when_none_or_zero_is_given(api: APIClient, models: None) -> None:
    seeds = {
        api.post("/api/v1/generations/", {"prompt": "a", "seed": 0}, format="json").json()["seed"] for _ in range(3)
    }
    assert 0 not in seeds and len(seeds) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"prompt": "a", "num_images": 9}, "num_images"),
        ({"prompt": "a", "num_images": 0}, "num_images"),
        ({"prompt": "a", "steps": 151}, "steps"),
        ({"prompt": "a", "width": 100}, "width"),
        ({"prompt": "a", "height": 4096}, "height"),
        ({"prompt": "a", "width": 2048, "height": 2048}, "width"),
        ({"prompt": "a", "scheduler": "warp"}, "scheduler"),
        ({"prompt": "a", "seed": -1}, "seed"),
        ({"prompt": "a", "seed": 2**32}, "seed"),
        ({"prompt": "a", "model": "nope"}, "model"),
        ({"prompt": "a", "model": "off"}, "model"),
        ({"prompt": "a", "loras": [{"name": "nope"}]}, "loras"),
        ({"prompt": "a", "loras": [{"name": "ink", "scale": 3}]}, "loras"),
        ({"prompt": "a", "loras": [{"name": "ink"}, {"name": "glow"}, {"name": "third"}]}, "loras"),
        ({"prompt": "a", "loras": [{"name": "ink"}, {"name": "ink"}]}, "loras"),
        ({"prompt": "a", "model": "xl", "loras": [{"name": "ink"}]}, "loras"),
        ({"prompt": "a", "guidance_scale": 31}, "guidance_scale"),
        ({"prompt": "a", "strength": 1.5}, "strength"),
        ({"prompt": "a", "webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url"),
        ({"prompt": "a", "webhook_url": "ftp://example.com/"}, "webhook_url"),
    ],
)
def test_it_refuses_bad_generation_input_naming_the_field(
    api: APIClient,
    models: None,
    settings,
    body: dict,
    field: str,  # noqa: ANN001
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False  # the test settings allow it for the workers' local receivers
    response = api.post("/api/v1/generations/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not GenerationJob.objects.exists()


def test_it_refuses_a_file_that_is_not_an_image(api: APIClient, models: None) -> None:
    upload = SimpleUploadedFile("x.png", b"not an image", content_type="image/png")
    response = api.post("/api/v1/generations/", {"prompt": "a", "init_image": upload}, format="multipart")
    assert response.status_code == 400 and "init_image" in response.json()["errors"]


def test_it_refuses_a_decompression_bomb(api: APIClient, models: None) -> None:
    buffer = io.BytesIO()
    Image.new("1", (10000, 10000)).save(buffer, format="PNG")  # a few KB that decode to 100 megapixels
    upload = SimpleUploadedFile("bomb.png", buffer.getvalue(), content_type="image/png")
    response = api.post("/api/v1/generations/", {"prompt": "a", "init_image": upload}, format="multipart")
    assert response.status_code == 400 and "init_image" in response.json()["errors"]
    assert not GenerationJob.objects.exists()


def test_an_init_image_makes_an_image_to_image_job(api: APIClient, models: None) -> None:
    upload = SimpleUploadedFile("init.png", png(), content_type="image/png")
    response = api.post(
        "/api/v1/generations/",
        {"prompt": "a", "init_image": upload, "strength": 0.4, "loras": '[{"name": "ink", "scale": 0.7}]'},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.kind == "image_to_image" and job.params["strength"] == 0.4 and job.init_image
    assert job.params["loras"] == [{"name": "ink", "scale": 0.7}]


def test_users_see_their_own_jobs_and_staff_see_all(models: None) -> None:
    alice, bob, staff = user("alice"), user("bob"), user("root", staff=True)
    job_id = alice.post("/api/v1/generations/", {"prompt": "a"}, format="json").json()["id"]
    assert alice.get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert bob.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert bob.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    assert bob.delete(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert [job["id"] for job in alice.get("/api/v1/jobs/").json()["results"]] == [job_id]
    assert bob.get("/api/v1/jobs/").json()["count"] == 0
    assert staff.get(f"/api/v1/jobs/{job_id}/").status_code == 200
    assert GenerationJob.objects.get(pk=job_id).owner.username == "alice"


def test_anonymous_use_follows_the_setting(api: APIClient, models: None, settings) -> None:  # noqa: ANN001
    settings.API_ALLOW_ANONYMOUS = False
    response = api.post("/api/v1/generations/", {"prompt": "a"}, format="json")
    assert response.status_code == 401
    assert api.get("/api/v1/models/").status_code == 401
    settings.API_ALLOW_ANONYMOUS = True
    assert api.get("/api/v1/models/").status_code == 200


def test_registry_writes_are_for_staff(models: None) -> None:
    body = {"name": "new-model", "source": "org/new-model", "family": "sd1"}
    assert user("alice").post("/api/v1/models/", body, format="json").status_code == 403
    staff = user("root", staff=True)
    assert staff.post("/api/v1/models/", body, format="json").status_code == 201
    assert staff.patch("/api/v1/models/new-model/", {"enabled": False}, format="json").status_code == 200
    assert DLModel.objects.get(name="new-model").enabled is False
    lora = {"name": "pickle", "source": "org/x", "weight_name": "evil.bin"}
    response = staff.post("/api/v1/loras/", lora, format="json")
    assert response.status_code == 400 and "weight_name" in response.json()["errors"]
    assert not LoraAdapter.objects.filter(name="pickle").exists()


def test_cancel_and_delete_a_queued_job(api: APIClient, models: None) -> None:
    job_id = api.post("/api/v1/generations/", {"prompt": "a"}, format="json").json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.delete(f"/api/v1/jobs/{job_id}/").status_code == 204
    assert not GenerationJob.objects.filter(pk=job_id).exists()
    assert api.get(f"/api/v1/jobs/{job_id}/").status_code == 404


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_finished_job_has_nothing_to_cancel_409_and_stays_as_it_was(
    api: APIClient, models: None, status: str
) -> None:
    job_id = api.post("/api/v1/generations/", {"prompt": "a"}, format="json").json()["id"]
    GenerationJob.objects.filter(pk=job_id).update(status=status, error="")
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 409
    assert response.json() == {"detail": f"The job has finished ({status}); nothing to cancel."}
    job = GenerationJob.objects.get(pk=job_id)
    assert job.status == status and not job.cancel_requested and job.finished_at is None
    with pytest.raises(ValidationError):  # the rule is the domain function's, for the admin and commands too
        job_cancel(job=job)


def test_the_queue_lists_waiting_jobs_in_order(api: APIClient, models: None) -> None:
    ids = [api.post("/api/v1/generations/", {"prompt": str(i)}, format="json").json()["id"] for i in range(3)]
    queue = api.get("/api/v1/queue/").json()
    assert [entry["job"]["id"] for entry in queue] == ids
    assert [entry["position"] for entry in queue] == [1, 2, 3]


def test_idempotency_key_returns_the_same_job_and_409_for_another_body(api: APIClient, models: None) -> None:
    first = api.post("/api/v1/generations/", {"prompt": "a", "seed": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/v1/generations/", {"prompt": "a", "seed": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    other = api.post("/api/v1/generations/", {"prompt": "b", "seed": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 202 and again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 409
    assert GenerationJob.objects.count() == 1


def test_queued_jobs_per_user_are_capped(models: None, settings) -> None:  # noqa: ANN001
    settings.API_MAX_QUEUED_JOBS_PER_USER = 2
    alice = user("alice")
    codes = [alice.post("/api/v1/generations/", {"prompt": "a"}, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]


def test_submissions_are_throttled_per_user(models: None, settings) -> None:  # noqa: ANN001
    settings.API_SUBMISSION_RATE = "2/minute"
    alice = user("alice")
    codes = [alice.post("/api/v1/generations/", {"prompt": "a"}, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert user("bob").post("/api/v1/generations/", {"prompt": "a"}, format="json").status_code == 202
    assert GenerationJob.objects.count() == 3


def test_random_diffusion_validation_names_the_field(api: APIClient, models: None, sample_dataset) -> None:  # noqa: ANN001
    cases = [
        ({"dataset": sample_dataset.pk, "prompt_list": []}, "prompt_list"),
        ({"dataset": 999999, "prompt_list": ["a"]}, "dataset"),
        ({"dataset": sample_dataset.pk, "prompt_list": ["a"], "models": ["off"]}, "models"),
        ({"dataset": sample_dataset.pk, "prompt_list": ["a"], "image_ids": [999999]}, "image_ids"),
        ({"dataset": sample_dataset.pk, "prompt_list": ["a"], "strength": 0}, "strength"),
    ]
    for body, field in cases:
        response = api.post("/api/v1/random-diffusions/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["errors"], (body, response.json())
    assert not GenerationJob.objects.exists()


def test_the_original_route_accepts_a_prompt_list(api: APIClient, models: None, sample_dataset) -> None:  # noqa: ANN001
    url = f"/api/image_model_domain/v1/random_diffusion/{sample_dataset.pk}/initialize_diffusion/"
    response = api.post(url, {"prompt_list": ["a cat", "a dog"]}, format="json", HTTP_X_CSRFTOKEN="whatever")
    assert response.status_code == 202, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.kind == "random_diffusion" and job.images_expected == sample_dataset.images.count()
    assert (
        api.post(url.replace(str(sample_dataset.pk), "999999"), {"prompt_list": ["a"]}, format="json").status_code
        == 404
    )
    assert api.post(url, {"prompt_list": "not a list"}, format="json").status_code == 400


def test_malformed_json_is_a_400_not_a_500(api: APIClient, models: None) -> None:
    response = api.post("/api/v1/generations/", "{not json", content_type="application/json")
    assert response.status_code == 400


def test_health_endpoints(api: APIClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_docs_are_served_without_a_cdn(api: APIClient) -> None:
    page = api.get("/docs").content.decode()
    assert "/static/drf_spectacular_sidecar/" in page and "cdn" not in page.lower()
    assert api.get("/redoc").status_code == 200
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/generations/" in schema["paths"]
    assert "/api/image_model_domain/v1/random_diffusion/{dataset_id}/initialize_diffusion/" in schema["paths"]


def test_the_queue_estimates_start_from_recent_seconds_per_step(api: APIClient, models: None) -> None:
    queue_history_of_a_tenth_of_a_second_a_step()
    running = api.post("/api/v1/generations/", {"prompt": "a", "steps": 50, "num_images": 2}, format="json").json()
    GenerationJob.objects.filter(pk=running["id"]).update(status="running", progress_step=40)
    queued = api.post("/api/v1/generations/", {"prompt": "b", "steps": 10}, format="json").json()
    entries = {entry["job"]["id"]: entry for entry in api.get("/api/v1/queue/").json()}
    assert entries[running["id"]]["estimated_start_s"] == 0.0 and entries[running["id"]]["position"] is None
    assert entries[queued["id"]]["position"] == 1
    assert entries[queued["id"]]["estimated_start_s"] == pytest.approx((100 - 40) * 0.1)
    assert entries[queued["id"]]["worker_available"] is True and entries[queued["id"]]["note"] == ""


def test_a_bearer_token_is_the_same_token_and_an_unknown_one_is_401(models: None) -> None:
    account = User.objects.create_user("carol")
    key = Token.objects.create(user=account).key
    for word in ("Bearer", "Token", "bearer"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{word} {key}")
        response = client.post("/api/v1/generations/", {"prompt": "a"}, format="json")
        assert response.status_code == 202 and response.json()["owner"] == "carol", (word, response.content)
    for header in ("Bearer nope", "Token nope", "Bearer", "Bearer a b"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get("/api/v1/jobs/")
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer", header
    assert GenerationJob.objects.count() == 3


def test_forms_are_refused_where_the_schema_says_json(models: None) -> None:
    staff = user("root", staff=True)
    cases = [
        ("/api/v1/random-diffusions/", {"dataset": 1, "prompt_list": "a"}, "multipart"),
        ("/api/v1/models/", {"name": "m", "source": "x"}, "multipart"),
        ("/api/v1/loras/", "name=l&source=x", "application/x-www-form-urlencoded"),
        ("/api/v1/generations/", "prompt=a", "application/x-www-form-urlencoded"),
    ]
    for path, body, kind in cases:
        if kind == "multipart":
            response = staff.post(path, body, format="multipart")
        else:
            response = staff.post(path, body, content_type=kind)
        assert response.status_code == 415, (path, response.content)
        assert response["Content-Type"] == "application/json"
    assert not GenerationJob.objects.exists() and not DLModel.objects.filter(name="m").exists()


@pytest.mark.parametrize(
    "loras",
    [
        ['{"name": "ink", "scale": 0.7}', '{"name": "glow"}'],  # one part per adapter (OpenAPI generators)
        ['[{"name": "ink", "scale": 0.7}, {"name": "glow"}]'],  # one part with the list (the web page, curl)
    ],
)
def test_image_to_image_reads_loras_parts_as_the_schema_encodes_them(api: APIClient, models: None, loras) -> None:  # noqa: ANN001
    upload = SimpleUploadedFile("init.png", png(), content_type="image/png")
    response = api.post(
        "/api/v1/generations/", {"prompt": "a", "init_image": upload, "loras": loras, "seed": "5"}, format="multipart"
    )
    assert response.status_code == 202, response.content
    job = GenerationJob.objects.get()
    assert job.params["loras"] == [{"name": "ink", "scale": 0.7}, {"name": "glow", "scale": 1.0}] and job.seed == 5


def test_a_multipart_form_is_image_to_image_and_null_parts_are_no_value(api: APIClient, models: None) -> None:
    response = api.post("/api/v1/generations/", {"prompt": "a"}, format="multipart")
    assert response.status_code == 400 and "init_image" in response.json()["errors"]
    upload = SimpleUploadedFile("init.png", png(), content_type="image/png")
    response = api.post("/api/v1/generations/", {"prompt": "null", "init_image": upload}, format="multipart")
    assert response.json()["errors"] == {"prompt": ["This field may not be null."]}
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"prompt": "a", "cfg_scale": 7, "sampler_name": "Euler a", "n_iter": 2, "batch_size": 2},
            {
                "cfg_scale": ["Unknown field; did you mean `guidance_scale`?"],
                "sampler_name": ["Unknown field; did you mean `scheduler`?"],
                "n_iter": ["Unknown field; did you mean `num_images`?"],
                "batch_size": ["Unknown field; did you mean `num_images`?"],
            },
        ),
        (
            {"prompt": "a", "denoising_strength": 0.5},
            {"denoising_strength": ["`strength` is for image-to-image: send a multipart form with `init_image`."]},
        ),
        (
            {"prompt": "a", "loras": [{"name": "ink", "weight": 1}]},
            {"loras": ["0.weight: Unknown field. Known fields: name, scale."]},
        ),
    ],
)  # fmt: skip
def test_unknown_fields_are_refused_by_name_with_a_hint(api: APIClient, models: None, body, errors) -> None:  # noqa: ANN001
    response = api.post("/api/v1/generations/", body, format="json")
    assert response.status_code == 400 and response.json()["errors"] == errors, response.json()
    assert not GenerationJob.objects.exists()
