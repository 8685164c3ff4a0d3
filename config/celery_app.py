"""The Celery application. Workers: `celery -A config worker` (see the README)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("diffusion_server")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Task modules import torch and diffusers lazily, inside the worker, so discovering them here
# keeps the web process free of both.
app.autodiscover_tasks(["tasks"], related_name=None)
