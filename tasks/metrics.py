"""Prometheus metrics of a worker's pool process, served on WORKER_METRICS_PORT (0: off).

One pool process per GPU worker (concurrency 1), so one port per worker holds its whole story:
jobs by outcome, queue wait, inference seconds, model loads, resident models, GPU memory.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
JOBS = Counter("diffusion_worker_jobs_total", "Jobs this worker finished", ["status"])
QUEUE_WAIT = Histogram("diffusion_worker_queue_wait_seconds", "Seconds from enqueue to start", buckets=BUCKETS)
INFERENCE = Histogram("diffusion_worker_inference_seconds", "Seconds of denoising per job", buckets=BUCKETS)
MODEL_LOADS = Gauge("diffusion_worker_model_loads", "Checkpoint loads since the process started")
RESIDENT_MODELS = Gauge("diffusion_worker_resident_models", "Checkpoints held in memory")
GPU_MEMORY = Gauge("diffusion_worker_gpu_memory_bytes", "CUDA memory", ["kind"])


def serve(port: int) -> None:
    if port:
        try:
            start_http_server(port)
        except OSError as error:  # a second worker on one host: metrics off, jobs on
            logger.warning("worker metrics not served on port %d: %s", port, error)


def record_job(status: str, queue_wait_s: float | None, inference_s: float | None) -> None:
    JOBS.labels(status).inc()
    if queue_wait_s is not None:
        QUEUE_WAIT.observe(queue_wait_s)
    if inference_s:
        INFERENCE.observe(inference_s)


def record_engine(engine) -> None:  # noqa: ANN001
    from services.devices import gpu_memory

    MODEL_LOADS.set(engine.pipelines.loads)
    RESIDENT_MODELS.set(len(engine.pipelines.models))
    for kind, value in gpu_memory().items():
        GPU_MEMORY.labels(kind).set(value)
