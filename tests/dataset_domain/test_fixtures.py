"""`loaddata fixtures/*.json` on an empty database: the original server's command."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image

from dataset_domain.models import Dataset, DatasetImage
from image_model_domain.models import DLModel

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_every_fixture_loads_into_an_empty_database_twice() -> None:
    fixtures = sorted(str(path) for path in (ROOT / "fixtures").glob("*.json"))
    call_command("loaddata", *fixtures, verbosity=0)
    call_command("loaddata", *fixtures, verbosity=0)  # natural keys: loading again changes nothing

    repos = set(DLModel.objects.values_list("source", flat=True))
    assert {
        "CompVis/stable-diffusion-v1-4",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "stabilityai/stable-diffusion-2",
        "stabilityai/stable-diffusion-2-1",
    } <= repos
    # No hub here: the hub checkpoints are never drawn or chosen until enabled.
    assert not DLModel.objects.filter(source__contains="stable-diffusion", enabled=True).exists()
    sample = Dataset.objects.get(name="sample")
    images = DatasetImage.objects.filter(dataset=sample)
    assert images.count() >= 8
    modes = set()
    for image in images:
        with image.image.open("rb") as handle:
            data = handle.read()
        assert hashlib.sha256(data).hexdigest() == image.sha256
        with Image.open(image.image.path) as opened:
            assert opened.size == (image.width, image.height)
            modes.add(opened.mode)
    assert {"RGB", "RGBA", "P", "L"} <= modes


def test_make_run_loads_fixtures_only_into_an_empty_registry_so_edits_survive_a_restart(dev_checkpoint_files) -> None:  # noqa: ANN001
    fixtures = sorted(str(path) for path in (ROOT / "fixtures").glob("*.json"))
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert "manage.py loaddata_if_empty fixtures/*.json" in script and "manage.py loaddata " not in script

    def start() -> None:  # what scripts/run.sh does before it starts the processes
        call_command("loaddata_if_empty", *fixtures, verbosity=0)
        call_command("build_dev_models", verbosity=0)

    start()
    assert DLModel.objects.filter(name="stable-diffusion-v1-5", enabled=False).exists()
    sample_images = DatasetImage.objects.filter(dataset__name="sample").count()
    DLModel.objects.filter(name="stable-diffusion-v1-5").update(enabled=True, preload=True)
    DLModel.objects.filter(name="tiny-sd-b").update(enabled=False)
    DatasetImage.objects.filter(dataset__name="sample").first().delete()

    start()  # a restart
    assert DLModel.objects.filter(name="stable-diffusion-v1-5", enabled=True, preload=True).exists()
    assert DLModel.objects.filter(name="tiny-sd-b", enabled=False).exists()
    assert DatasetImage.objects.filter(dataset__name="sample").count() == sample_images - 1
