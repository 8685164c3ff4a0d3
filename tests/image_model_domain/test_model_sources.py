"""Registry sources confined to MODEL_ROOT (or MODEL_SOURCE_DIRS) or the hub; owners see no server paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from image_model_domain.models import DLModel, GenerationJob, LoraAdapter
from image_model_domain.webhooks import webhook_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def roots(settings, tmp_path: Path) -> Path:  # noqa: ANN001
    model_root = tmp_path / "models"
    (model_root / "local" / "ckpt").mkdir(parents=True)
    os.symlink("/etc", model_root / "escape")
    settings.MODEL_ROOT = model_root
    settings.MODEL_SOURCE_DIRS = []
    return tmp_path


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("root", is_staff=True))
    return client


@pytest.mark.parametrize(
    "source",
    [
        "/etc",
        "../../../../etc",
        "dev/../../etc",
        "local/../../outside",
        "escape",
        "escape/ssl",
        "tests",  # not under MODEL_ROOT, but a directory of the working directory diffusers would load
        "image_model_domain/migrations",
        "/",
        "a\\..\\b",
        "",
        "0" * 600,
    ],
)
def test_a_model_source_outside_model_root_is_a_400_naming_source(roots: Path, staff: APIClient, source: str) -> None:
    response = staff.post("/api/v1/models/", {"name": "evil", "source": source}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["source"]
    response = staff.post(
        "/api/v1/loras/", {"name": "evil", "source": source, "weight_name": "w.safetensors"}, format="json"
    )
    assert response.status_code == 400 and list(response.json()["errors"]) == ["source"]
    assert not DLModel.objects.exists() and not LoraAdapter.objects.exists()


def test_hub_ids_and_paths_inside_model_root_or_an_allowed_dir_are_accepted(
    roots: Path,
    staff: APIClient,
    settings,  # noqa: ANN001
) -> None:
    for name, source in [
        ("hub", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ("relative", "local/ckpt"),
        ("absolute", str(roots / "models" / "local" / "ckpt")),
    ]:
        response = staff.post("/api/v1/models/", {"name": name, "source": source}, format="json")
        assert response.status_code == 201, (source, response.content)
    elsewhere = roots / "shared-checkpoints"
    elsewhere.mkdir()
    body = {"name": "elsewhere", "source": str(elsewhere)}
    assert staff.post("/api/v1/models/", body, format="json").status_code == 400
    settings.MODEL_SOURCE_DIRS = [elsewhere]
    assert staff.post("/api/v1/models/", body, format="json").status_code == 201


@pytest.mark.parametrize("weight_name", ["../../x.safetensors", "sub/x.safetensors", "/etc/x.safetensors", ".."])
def test_a_weight_name_with_path_parts_is_a_400(roots: Path, staff: APIClient, weight_name: str) -> None:
    body = {"name": "ink", "source": "org/ink", "weight_name": weight_name}
    response = staff.post("/api/v1/loras/", body, format="json")
    assert response.status_code == 400 and "weight_name" in response.json()["errors"]
    LoraAdapter.objects.create(name="ok", source="org/ok", weight_name="ok.safetensors")
    response = staff.patch("/api/v1/loras/ok/", {"weight_name": weight_name}, format="json")
    assert response.status_code == 400 and "weight_name" in response.json()["errors"]
    response = staff.patch("/api/v1/loras/ok/", {"source": "/etc"}, format="json")
    assert response.status_code == 400 and "source" in response.json()["errors"]


def test_the_admin_refuses_an_outside_source(roots: Path, admin_client) -> None:  # noqa: ANN001
    form = {"name": "evil", "source": "/etc", "family": "sd1", "dtype": "auto", "default_scheduler": "euler"}
    form.update({"resolution": 512, "metadata": "{}"})
    response = admin_client.post("/admin/image_model_domain/dlmodel/add/", form)
    assert response.status_code == 200 and "inside MODEL_ROOT" in response.content.decode()
    assert not DLModel.objects.exists()


def test_non_staff_owners_see_errors_without_server_paths() -> None:
    alice = User.objects.create_user("alice")
    error = (
        "OSError: Error no file named model_index.json found in directory /srv/app/var/models/dev/x; "
        "see https://huggingface.co/docs/diffusers or org/name, 3/4 steps"
    )
    job = GenerationJob.objects.create(
        kind="text_to_image", owner=alice, status="failed", params={"model": "x", "prompt": "a"}, seed=1,
        queue="q", images_expected=1, error=error,
    )  # fmt: skip
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("root", is_staff=True))
    owner = APIClient()
    owner.force_authenticate(alice)
    for _ in range(2):  # the second time from the cache, which must not hand staff's body to the owner
        assert staff.get(f"/api/v1/jobs/{job.pk}/").json()["error"] == error
        seen = owner.get(f"/api/v1/jobs/{job.pk}/").json()["error"]
        assert "/srv" not in seen and "<server path>" in seen
        assert "https://huggingface.co/docs/diffusers" in seen and "org/name" in seen and "3/4" in seen
        assert owner.get("/api/v1/jobs/").json()["results"][0]["error"] == seen
    assert "/srv" not in webhook_payload(job)["error"]


def test_a_model_source_may_be_a_safetensors_file_under_model_root_and_nothing_else(
    roots: Path, staff: APIClient
) -> None:
    local = roots / "models" / "local"
    (local / "civitai.safetensors").write_bytes(b"weights")
    (local / "pickled.ckpt").write_bytes(b"pickle")
    (local / "notes.txt").write_text("not weights")
    os.symlink("/etc/hostname", local / "leak.safetensors")
    body = {"name": "civitai", "source": "local/civitai.safetensors", "family": "sdxl"}
    body["metadata"] = {"config": "local/ckpt"}
    assert staff.post("/api/v1/models/", body, format="json").status_code == 201
    absolute = {"name": "civitai-abs", "source": str(local / "civitai.safetensors")}
    assert staff.post("/api/v1/models/", absolute, format="json").status_code == 201
    for source, why in [
        ("local/pickled.ckpt", ".safetensors"),
        (str(local / "pickled.ckpt"), ".safetensors"),
        ("local/notes.txt", ".safetensors"),
        ("local/missing.safetensors", "No such"),
        (str(local / "missing.safetensors"), "No such"),
        ("local/leak.safetensors", "outside"),
    ]:
        response = staff.post("/api/v1/models/", {"name": "bad", "source": source}, format="json")
        assert response.status_code == 400, (source, response.content)
        assert list(response.json()["errors"]) == ["source"] and why in str(response.json()["errors"]["source"])
    # A LoRA names its directory and, in weight_name, the file.
    lora = {"name": "ink", "source": "local/civitai.safetensors", "weight_name": "civitai.safetensors"}
    response = staff.post("/api/v1/loras/", lora, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["source"]
    assert staff.post("/api/v1/loras/", lora | {"source": "local"}, format="json").status_code == 201
    # The config a single file is read with is held to the same rules.
    for config in ["/etc", "../../etc", "local/civitai.safetensors", 3]:
        response = staff.patch("/api/v1/models/civitai/", {"metadata": {"config": config}}, format="json")
        assert response.status_code == 400 and list(response.json()["errors"]) == ["metadata"], config
    assert DLModel.objects.get(name="civitai").metadata == {"config": "local/ckpt"}
