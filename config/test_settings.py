"""Settings for the test suite: the machine's real PostgreSQL and Redis, defaults overridable by env.

The Celery worker that tests start runs with these same settings (and the test database's name).
"""

import os

os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/diffusion")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("JOB_PROGRESS_INTERVAL_S", "0.05")
os.environ.setdefault("PREVIEW_EVERY_STEPS", "2")
# One test session's database and queues are its own (its worker subprocesses inherit these), so
# two sessions on one machine never take each other's messages or drop each other's database.
os.environ.setdefault("TEST_SESSION", str(os.getpid()))
os.environ.setdefault("DIFFUSION_DEFAULT_QUEUE", f"test-diffusion-{os.environ['TEST_SESSION']}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"diffusion-test-{os.environ['TEST_SESSION']}")
os.environ.setdefault("REGISTRY_BROADCAST_QUEUE", f"test-registry-{os.environ['TEST_SESSION']}")
os.environ.setdefault("WEBHOOK_QUEUE", f"test-webhooks-{os.environ['TEST_SESSION']}")
os.environ.setdefault("DIFFUSION_PRELOAD", "false")
os.environ.setdefault("API_ALLOW_ANONYMOUS", "true")
# Test workers deliver webhooks to receivers on 127.0.0.1; tests of the refusal turn this off in-process.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
os.environ.setdefault("WORKER_METRICS_PORT", "0")
_base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var")
os.environ.setdefault("MEDIA_ROOT", os.path.join(_base, "test-media"))
# Development checkpoints are shared with `make run` (built once, identical by construction).
os.environ.setdefault("MODEL_ROOT", os.path.join(_base, "models"))

from config.settings import *  # noqa: E402,F403

DATABASES["default"]["TEST"] = {"NAME": f"test_diffusion_{os.environ['TEST_SESSION']}"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
