# syntax=docker/dockerfile:1
# Web tier of Diffusion Server: Django + DRF under gunicorn. It never imports torch or diffusers,
# so it installs requirements-web.txt only (a small image that starts fast). The same image runs
# the one-shot migrate job, Celery beat and the CPU worker for webhook deliveries.
#
# Build from the repository root:  docker build -f docker/web.Dockerfile -t diffusion-server-web .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_ENV=production \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/var/media \
    MODEL_ROOT=/app/var/models \
    HF_HOME=/app/var/hf

# A fixed numeric uid/gid (10001) so Kubernetes' runAsNonRoot/runAsUser and volume fsGroup match.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, so code edits do not invalidate the pip layer.
COPY requirements-web.txt ./
RUN pip install -r requirements-web.txt

# Code stays root-owned: the app user can read it but not change it.
COPY . .

# Static files are collected at build time into STATIC_ROOT=/app/staticfiles (whitenoise serves
# them). Production settings insist on these variables (SECRET_KEY of 32+ characters); the values
# below exist only for this RUN step and are not baked into the image's environment.
RUN SECRET_KEY=collectstatic-at-build-time-only-not-a-real-secret \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://build:build@localhost:5432/build \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var/media /app/var/models /app/var/hf \
    && chown -R app:app /app/var
# Note: settings create VAR_DIR (/app/var) at import, so it belongs to the app user; the code does not.

USER 10001:10001

EXPOSE 8000

# Note: probes send "Host: localhost", so ALLOWED_HOSTS must contain localhost (the compose file
# and the Kubernetes ConfigMap include it). /healthz answers 200 whenever the process is up.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=4)"]

CMD ["gunicorn", "-c", "config/gunicorn.py"]
