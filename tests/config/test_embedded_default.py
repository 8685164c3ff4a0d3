"""The embedded default: no PostgreSQL, no Redis. SQLite and Celery's filesystem broker under VAR_DIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import worker_command

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.worker

SUBMIT = """
from image_model_domain.jobs import job_create_random_diffusion
from dataset_domain.models import Dataset
job = job_create_random_diffusion(owner=None, dataset=Dataset.objects.get(name="sample"),
                                  prompt_list=["a cat"], steps=2, image_ids=None)
print(job.pk)
"""

STATUS = """
from image_model_domain.models import GenerationJob
job = GenerationJob.objects.get(pk="{pk}")
print(job.status, job.images.count(), job.images_expected, job.error)
"""

# The live events endpoint without Redis: it polls the job row (the job has finished, so the stream ends at once).
EVENTS = """
from django.test import Client
response = Client().get("/api/v1/jobs/{pk}/events/")
events = [line for line in b"".join(response.streaming_content).decode().splitlines() if line.startswith("event: ")]
print(response.status_code, events[0], events[-1], events.count("event: image"))
"""


def test_a_job_runs_on_sqlite_and_the_filesystem_broker(tmp_path: Path, dev_checkpoint_files: None) -> None:
    keep = {"PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env |= {
        "VAR_DIR": str(tmp_path),
        "MODEL_ROOT": str(ROOT / "var" / "models"),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    manage("migrate", "--noinput")
    manage("loaddata", "fixtures/datasets.json", "fixtures/models.json")
    manage("build_dev_models")
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        worker_command(["diffusion", "webhooks"]),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        job_id = manage("shell", "--no-imports", "-c", SUBMIT).strip().splitlines()[-1]
        deadline = time.monotonic() + 240
        while True:
            status, made, expected, *error = manage("shell", "--no-imports", "-c", STATUS.format(pk=job_id)).split()
            if status not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == "succeeded", (status, error, (tmp_path / "worker.log").read_text()[-3000:])
        assert int(made) == int(expected) == 10
        assert (tmp_path / "db.sqlite3").is_file()
        assert len(list((tmp_path / "media" / "generated").rglob("*.png"))) == 10
        events = manage("shell", "--no-imports", "-c", EVENTS.format(pk=job_id)).strip().splitlines()[-1]
        assert events == "200 event: started event: finished 10"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
