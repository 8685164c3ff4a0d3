# syntax=docker/dockerfile:1
# GPU worker of Diffusion Server: one Celery worker process per GPU, concurrency 1, holding
# preloaded diffusers pipelines. Installs requirements.txt (the web tier plus torch, diffusers,
# transformers, peft, safetensors, accelerate).
#
# Base image: a slim Python, not nvidia/cuda. The Linux torch wheels carry their own CUDA user
# space (cuBLAS, cuDNN, NCCL ... as nvidia-* wheels), so a CUDA base image would only add a
# second, unused copy of those libraries. What the container needs from the host is the NVIDIA
# driver, which the NVIDIA Container Toolkit (Docker) or the device plugin (Kubernetes) mounts in
# when the container is given a GPU.
#
# Which CUDA build of torch 2.13.0:
#   * default (TORCH_INDEX_URL empty): PyPI's manylinux x86_64 wheel, itself a CUDA build
#     (it depends on the nvidia-*-cu13 wheels), so the host driver must support CUDA 13 (R580+);
#   * older drivers: build with a PyTorch index for a CUDA 12 build, for example
#       docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 ...
#     torch is installed from that index first; the later "torch==2.13.0" requirement is then
#     already satisfied (a local version such as 2.13.0+cu128 matches ==2.13.0).
#
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t diffusion-server-worker .
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/app \
    DJANGO_ENV=production \
    MEDIA_ROOT=/app/var/media \
    MODEL_ROOT=/app/var/models \
    HF_HOME=/app/var/hf \
    DIFFUSION_DEVICE=cuda \
    WORKER_METRICS_PORT=9808 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Note: NVIDIA_VISIBLE_DEVICES is deliberately not set here. The GPU request (compose
# deploy.resources.reservations.devices, Kubernetes nvidia.com/gpu) decides which single GPU a
# worker sees; "all" in the image would hand every GPU to every container on hosts whose default
# runtime is nvidia.

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /app

COPY requirements-web.txt requirements.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"; \
    fi \
    && pip install -r requirements.txt \
    && python -c "import torch; print('torch', torch.__version__, 'built for CUDA', torch.version.cuda); assert torch.version.cuda, 'CPU-only torch in the worker image'"

# Code stays root-owned: the app user can read it but not change it.
COPY . .

RUN mkdir -p /app/var/media /app/var/models /app/var/hf \
    && chown -R app:app /app/var

USER 10001:10001

# Prometheus metrics of the worker (WORKER_METRICS_PORT).
EXPOSE 9808

# The worker's main process answers broadcast pings even while its single pool process is busy
# with a long generation, so this checks liveness, not idleness. start-period covers pipeline
# preloading at start.
HEALTHCHECK --interval=60s --timeout=30s --start-period=10m --retries=3 \
    CMD celery -A config inspect ping --destination "worker@$HOSTNAME" --timeout 10 || exit 1

# SIGTERM (docker stop, Kubernetes pod deletion) starts Celery's warm shutdown: the running job
# finishes before the process exits, so give the container a long stop grace period (compose
# stop_grace_period 15m, Kubernetes terminationGracePeriodSeconds 900).
CMD ["celery", "-A", "config", "worker", "--queues", "diffusion", "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO", "--hostname", "worker@%h"]
