"""`manage.py generate`: the job a worker would run, built by the same code (job_requests), in-process."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from services.pngmeta import read_recipe
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def test_it_writes_one_png_per_image_with_the_planned_seeds(dev_models, tmp_path: Path) -> None:  # noqa: ANN001
    output = tmp_path / "fox.png"
    out = io.StringIO()
    call_command("generate", "a red fox", "--model", "tiny-sd-a", "--steps", "2", "--seed", "5", "-n", "2",
                 "-o", str(output), stdout=out)  # fmt: skip
    recipes = [read_recipe((tmp_path / f"fox-{n}.png").read_bytes()) for n in (1, 2)]
    assert [recipe["seed"] for recipe in recipes] == [5, 6]
    assert {(r["model"], r["scheduler"], r["steps"], r["strength"]) for r in recipes} == {
        ("tiny-sd-a", "euler", 2, None)
    }
    assert "(seed 6)" in out.getvalue()


def test_an_init_image_makes_it_image_to_image_and_its_hash_is_recorded(dev_models, tmp_path: Path) -> None:  # noqa: ANN001
    source = next((ROOT / "fixtures" / "media" / "datasets" / "sample").glob("*.png"))
    output = tmp_path / "out.png"
    call_command("generate", "a red fox", "--model", "tiny-sd-a", "--steps", "4", "--strength", "0.5",
                 "--init-image", str(source), "-o", str(output), stdout=io.StringIO())  # fmt: skip
    recipe = read_recipe(output.read_bytes())
    assert recipe["strength"] == 0.5 and recipe["init_image_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_a_bad_option_is_an_error_naming_it(dev_models, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(CommandError, match="width"):
        call_command("generate", "a fox", "--model", "tiny-sd-a", "--width", "65", "-o", str(tmp_path / "x.png"))
