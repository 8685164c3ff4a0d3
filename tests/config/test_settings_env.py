"""Settings come from the environment, strictly: a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**env: str) -> dict[str, str]:
    """The machine's basics only: none of the variables the test settings put in this process."""
    keep = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**keep, "DJANGO_SETTINGS_MODULE": "config.settings", **env}


def django_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
        ({"DJANGO_ENV": "production", "SECRET_KEY": ""}, "SECRET_KEY"),
        ({"DIFFUSION_DEVICE": "tpu"}, "DIFFUSION_DEVICE"),
        ({"DIFFUSION_BATCH_SIZE": "four"}, "DIFFUSION_BATCH_SIZE"),
        ({"DIFFUSION_MODEL_QUEUES": "no-equals-sign"}, "DIFFUSION_MODEL_QUEUES"),
        ({"API_SUBMISSION_RATE": "fast"}, "API_SUBMISSION_RATE"),
        ({"MEDIA_ACCEL_REDIRECT": "protected-media"}, "MEDIA_ACCEL_REDIRECT"),
        ({"API_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, "API_TRUSTED_PROXIES"),
        ({"DB_OUTAGE_WAIT_S": "2000"}, "DB_OUTAGE_WAIT_S"),
        ({"DB_OUTAGE_WAIT_S": "150"}, "RECONCILE_HEARTBEAT_TIMEOUT_S"),
        ({"API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP": "0"}, "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env: dict[str, str], variable: str, tmp_path: Path) -> None:
    result = django_check({"VAR_DIR": str(tmp_path), **env})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_production_needs_a_secret_and_turns_anonymous_use_off(tmp_path: Path) -> None:
    env = {"VAR_DIR": str(tmp_path), "DJANGO_ENV": "production", "SECRET_KEY": "s" * 40, "ALLOWED_HOSTS": "example.com"}
    code = "from django.conf import settings as s; print(s.DEBUG, s.API_ALLOW_ANONYMOUS, s.WEBHOOK_ALLOW_PRIVATE)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


def test_the_web_process_never_imports_torch_or_diffusers(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
            "from django.urls import resolve; resolve('/api/v1/generations/'); import config.wsgi",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=clean_env(VAR_DIR=str(tmp_path)),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "django" in imported and "celery" in imported
    assert not imported & {"torch", "diffusers", "transformers", "peft"}
