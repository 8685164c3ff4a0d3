"""Settings for Diffusion Server, read from the environment by config.env (see the README table)."""

from __future__ import annotations

import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue
from kombu.common import Broadcast

from config.env import env_bool, env_float, env_int, env_list, env_mapping, env_networks, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

VAR_DIR.mkdir(parents=True, exist_ok=True)

DJANGO_ENV = env_str("DJANGO_ENV", "development", choices=("development", "production", "test"))
PRODUCTION = DJANGO_ENV == "production"

if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters in production.")
else:
    SECRET_KEY = env_str("SECRET_KEY", "development-only-insecure-key-do-not-use-in-production")

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "dataset_domain",
    "image_model_domain",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.metrics.RequestMetricsMiddleware",
    "common.api.middleware.JSONErrorsUnderAPI",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.OneThreadUnderASGI",  # innermost: see its docstring
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production; SQLite under var/ is the embedded default for `make run`.
_database_url = env_url(
    "DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}", schemes=("postgres", "postgresql", "sqlite")
)
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Note: the web server and the worker write to one file; wait for the lock rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss"))

# The cache is an optimisation: with Redis down, reads are misses and writes are skipped (config/cache.py).
CACHE_CONNECT_TIMEOUT_S = env_float("CACHE_CONNECT_TIMEOUT_S", 1.0, minimum=0.01)
CACHE_RETRY_AFTER_S = env_float("CACHE_RETRY_AFTER_S", 5.0, minimum=0.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "diffusion"),
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": CACHE_CONNECT_TIMEOUT_S,
                "SOCKET_TIMEOUT": CACHE_CONNECT_TIMEOUT_S,
                "RETRY_AFTER_S": CACHE_RETRY_AFTER_S,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MODEL_ROOT = Path(env_str("MODEL_ROOT", str(VAR_DIR / "models")))
# Local checkpoints and LoRAs load only from MODEL_ROOT and these absolute directories (or the hub).
MODEL_SOURCE_DIRS = [Path(item) for item in env_list("MODEL_SOURCE_DIRS", [])]
if any(not item.is_absolute() for item in MODEL_SOURCE_DIRS):
    raise ImproperlyConfigured("MODEL_SOURCE_DIRS must be comma-separated absolute directories.")
# Files are served only through the API's checked views. Behind nginx, set this to an `internal`
# location (e.g. /protected-media/) that aliases MEDIA_ROOT, and nginx sends the bytes (X-Accel-Redirect).
MEDIA_ACCEL_REDIRECT = env_str("MEDIA_ACCEL_REDIRECT", "")
if MEDIA_ACCEL_REDIRECT and not MEDIA_ACCEL_REDIRECT.startswith("/"):
    raise ImproperlyConfigured(f"MEDIA_ACCEL_REDIRECT={MEDIA_ACCEL_REDIRECT!r} must be a path starting with /.")
FIXTURE_MEDIA_DIR = BASE_DIR / "fixtures" / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The API. Anonymous use is on for the local `make run` and off by default in production.
API_ALLOW_ANONYMOUS = env_bool("API_ALLOW_ANONYMOUS", default=not PRODUCTION)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # `Authorization: Bearer <token>` or `Token <token>`; sessions for the web page.
        "common.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["common.api.permissions.IsUserOrAllowedAnonymous"],
    # JSON with a nesting limit (a body nested 100000 deep is a 400, not a RecursionError). JSON only: the two
    # views that take files (image-to-image, dataset uploads) add multipart and document it; a form elsewhere is 415.
    "DEFAULT_PARSER_CLASSES": ["common.api.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "common.api.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "common.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["common.api.filters.StrictFilterBackend"],
    "EXCEPTION_HANDLER": "common.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Diffusion Server API",
    "DESCRIPTION": "Text-to-image, image-to-image with LoRA adapters, and random diffusion over datasets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge from validator.swagger.io: the docs load nothing from outside (config/docs.py).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    # One documented scheme (HTTP bearer); sessions are the web page's business.
    "AUTHENTICATION_WHITELIST": ["common.api.authentication.TokenAuthentication"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.api.schema.closed_request_bodies",
        "common.api.schema.non_blank_strings",
        "common.api.schema.not_found_on_path_parameters",
    ],
    "ENUM_NAME_OVERRIDES": {"SchedulerEnum": "image_model_domain.registry.SCHEDULERS"},
}
API_SUBMISSION_RATE = env_str("API_SUBMISSION_RATE", "60/minute")
if not re.fullmatch(r"\d+/(second|minute|hour|day)", API_SUBMISSION_RATE):
    raise ImproperlyConfigured(f"API_SUBMISSION_RATE={API_SUBMISSION_RATE!r} must look like 60/minute.")
API_MAX_QUEUED_JOBS_PER_USER = env_int("API_MAX_QUEUED_JOBS_PER_USER", 20, minimum=1)
API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP = env_int("API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP", 10, minimum=1)
# Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; from anyone
# else the header is ignored, so a client cannot pick the address its cap is counted against.
API_TRUSTED_PROXIES = env_networks("API_TRUSTED_PROXIES")

# Diffusion: what workers load and how.
DIFFUSION_DEVICE = env_str("DIFFUSION_DEVICE", "auto", choices=("auto", "cuda", "cpu", "mps"))
DIFFUSION_DTYPE = env_str("DIFFUSION_DTYPE", "auto", choices=("auto", "float16", "bfloat16", "float32"))
DIFFUSION_MAX_RESIDENT_MODELS = env_int("DIFFUSION_MAX_RESIDENT_MODELS", 3, minimum=1)
DIFFUSION_MEMORY_BUDGET_MB = env_int("DIFFUSION_MEMORY_BUDGET_MB", 0, minimum=0)  # 0: no byte budget
DIFFUSION_MAX_LORAS_PER_MODEL = env_int("DIFFUSION_MAX_LORAS_PER_MODEL", 8, minimum=2)
DIFFUSION_BATCH_SIZE = env_int("DIFFUSION_BATCH_SIZE", 4, minimum=1, maximum=64)
# A worker that takes a text-to-image job also takes queued jobs that can share its batches (same
# model, LoRAs, scheduler, steps, guidance and size), up to DIFFUSION_BATCH_SIZE images in all.
DIFFUSION_CROSS_JOB_BATCHING = env_bool("DIFFUSION_CROSS_JOB_BATCHING", default=True)
# Finished batches waiting for the background saver (PNG encode, file, row); 0 saves inline.
DIFFUSION_SAVE_QUEUE_DEPTH = env_int("DIFFUSION_SAVE_QUEUE_DEPTH", 2, minimum=0, maximum=64)
# Accelerations (services/accel.py); a model's metadata {"accel": {...}} overrides them for that model.
DIFFUSION_ATTENTION = env_str("DIFFUSION_ATTENTION", "sdpa", choices=("sdpa", "eager"))
DIFFUSION_CHANNELS_LAST = env_str("DIFFUSION_CHANNELS_LAST", "auto", choices=("auto", "true", "false"))  # auto: CUDA
DIFFUSION_FUSE_QKV = env_bool("DIFFUSION_FUSE_QKV", False)
DIFFUSION_COMPILE = env_bool("DIFFUSION_COMPILE", False)
DIFFUSION_COMPILE_CACHE_DIR = env_str("DIFFUSION_COMPILE_CACHE_DIR", str(VAR_DIR / "inductor-cache"))
DIFFUSION_DEFAULT_QUEUE = env_str("DIFFUSION_DEFAULT_QUEUE", "diffusion")
# Per-checkpoint queues so that a fleet can dedicate workers to models: model-name=queue pairs.
DIFFUSION_MODEL_QUEUES = env_mapping("DIFFUSION_MODEL_QUEUES")
DIFFUSION_PRELOAD = env_bool("DIFFUSION_PRELOAD", True)
DIFFUSION_HUB_OFFLINE = env_bool("HF_HUB_OFFLINE", False)

JOB_PROGRESS_INTERVAL_S = env_float("JOB_PROGRESS_INTERVAL_S", 0.5, minimum=0.0)
JOB_SOFT_TIME_LIMIT_S = env_int("JOB_SOFT_TIME_LIMIT_S", 1800, minimum=10)
JOB_HARD_TIME_LIMIT_S = env_int("JOB_HARD_TIME_LIMIT_S", 1900, minimum=20)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
# A worker that cannot reach the database keeps the message in hand (order kept) for this long,
# then hands it back to the broker (issue 9 item 9; tasks/outage.py).
DB_OUTAGE_WAIT_S = env_int("DB_OUTAGE_WAIT_S", 90, minimum=0)
if DB_OUTAGE_WAIT_S >= JOB_SOFT_TIME_LIMIT_S:
    raise ImproperlyConfigured(
        "DB_OUTAGE_WAIT_S must be shorter than JOB_SOFT_TIME_LIMIT_S (the wait runs inside the task)."
    )
# A QUEUED job whose message has not started after this long is re-enqueued (the broker lost it).
RECONCILE_QUEUED_AFTER_S = env_int("RECONCILE_QUEUED_AFTER_S", 600, minimum=1)
# A RUNNING job whose worker has not written a heartbeat for this long is taken as orphaned.
RECONCILE_HEARTBEAT_TIMEOUT_S = env_int("RECONCILE_HEARTBEAT_TIMEOUT_S", 120, minimum=1)
if DB_OUTAGE_WAIT_S >= RECONCILE_HEARTBEAT_TIMEOUT_S:
    # A worker waiting out an outage writes no heartbeat: the reconciler must not re-run its job meanwhile.
    raise ImproperlyConfigured("DB_OUTAGE_WAIT_S must be shorter than RECONCILE_HEARTBEAT_TIMEOUT_S.")
# Bearer token for the web tier's /metrics; unset: open in development, 404 in production.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters.")
# Workers write a presence row this often; one unseen for the timeout counts as gone (/readyz?workers=1, the queue).
WORKER_HEARTBEAT_INTERVAL_S = env_float("WORKER_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1)
WORKER_HEARTBEAT_TIMEOUT_S = env_float("WORKER_HEARTBEAT_TIMEOUT_S", 30.0, minimum=0.5)
if WORKER_HEARTBEAT_TIMEOUT_S <= WORKER_HEARTBEAT_INTERVAL_S:
    raise ImproperlyConfigured("WORKER_HEARTBEAT_TIMEOUT_S must be longer than WORKER_HEARTBEAT_INTERVAL_S.")
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 9808, minimum=0, maximum=65535)  # 0: off
RECONCILE_INTERVAL_S = env_int("RECONCILE_INTERVAL_S", 60, minimum=1)

# Live job events (GET /api/v1/jobs/{id}/events/): a Redis Stream per job, written by workers and
# read by the web tier; without Redis the endpoint polls the job row instead.
JOB_EVENTS_MAX_S = env_int("JOB_EVENTS_MAX_S", 900, minimum=1)  # one stream's lifetime; clients reconnect
JOB_EVENTS_TTL_S = env_int("JOB_EVENTS_TTL_S", 3600, minimum=60)  # a job's events kept after its last one
JOB_EVENTS_MAXLEN = env_int("JOB_EVENTS_MAXLEN", 10000, minimum=100)  # events kept per job (oldest trimmed)
PREVIEW_EVERY_STEPS = env_int("PREVIEW_EVERY_STEPS", 5, minimum=1)  # for jobs submitted with preview: true
JOB_EVENTS_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "diffusion") + ":job-events"

# Webhooks: signed with HMAC-SHA256 over the body (header X-Diffusion-Signature).
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET", SECRET_KEY)
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_QUEUE = env_str("WEBHOOK_QUEUE", "webhooks")
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 5, minimum=1)

# Celery. Redis when configured; otherwise the filesystem transport under var/ so that the
# service runs with nothing but Python.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", REDIS_URL or "filesystem://", schemes=("redis", "rediss", "filesystem", "amqp")
)
BROKER_CONNECT_TIMEOUT_S = env_float("BROKER_CONNECT_TIMEOUT_S", 2.0, minimum=0.1)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_CONNECT_TIMEOUT_S
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        # How often an idle worker looks for a message: the embedded default's latency from submit to start.
        "polling_interval": env_float("BROKER_FILESYSTEM_POLL_S", 0.2, minimum=0.001),
    }
else:
    # Redis redelivers an unacked message after visibility_timeout: it must exceed the longest
    # wait in the queue plus a run, or a long job is run twice (celery docs, "Caveats" of Redis).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 6 * 3600, minimum=60),
        # A submit with the broker down answers 503 within seconds instead of hanging on connect.
        "socket_connect_timeout": BROKER_CONNECT_TIMEOUT_S,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # the job row is the truth
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = DIFFUSION_DEFAULT_QUEUE
# Every worker gets its own copy of registry updates (a fanout exchange), see tasks/registry.py.
REGISTRY_BROADCAST_QUEUE = env_str("REGISTRY_BROADCAST_QUEUE", "diffusion-registry")
CELERY_TASK_QUEUES = (Queue(DIFFUSION_DEFAULT_QUEUE), Broadcast(REGISTRY_BROADCAST_QUEUE, routing_key="#"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
# Pipelines are loaded in the pool process, which Celery kills if its init outlasts this
# (4 s by default, celery#1715); preloading a checkpoint takes longer.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_int("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 600, minimum=4)
CELERY_BEAT_SCHEDULE = {
    # On the light queue, so that it never waits behind a long generation.
    "reconcile-jobs": {
        "task": "tasks.reconcile.reconcile_jobs",
        "schedule": float(RECONCILE_INTERVAL_S),
        "options": {"queue": WEBHOOK_QUEUE},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "plain", choices=("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"job": {"()": "config.logs.JobContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s [job=%(job_id)s] %(message)s"},
        "json": {"()": "config.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["job"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
# Workers log through the same configuration (with the job id) instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
