"""Storing a job's images off the critical path: PNG encode, storage write and row insert.

A worker hands each finished batch to a background thread and goes straight on to denoise the
next one, so the device does not wait while PNGs are encoded (85-95 ms for 512x512 on a CPU core,
over a second at 1024x1024) and files and rows are written. The queue is bounded
(DIFFUSION_SAVE_QUEUE_DEPTH batches wait at most; 0 saves inline): when storage is slower than the
device, the worker waits instead of holding every image in memory. The job is only finished after
`close()` has seen its last image stored; a batch that cannot be stored fails the job, names the
image, and stops the run at its next batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import connection

from config.logs import current_job
from image_model_domain.images import generated_image_create
from image_model_domain.models import GeneratedImage, GenerationJob
from tasks.outage import database_wait

logger = logging.getLogger(__name__)

_STOP = object()


class SaveFailed(Exception):
    """An image could not be stored; the job fails with this message."""


@dataclass(frozen=True)
class SavedBatch:
    """When a batch was stored (time.perf_counter(), the clock the engine's batch timings use)."""

    indexes: tuple[int, ...]
    started: float
    finished: float


class ImageRecorder:
    """Saves each finished batch as PNG files with their recipe and one GeneratedImage row each."""

    def __init__(self, job: GenerationJob, *, queue_depth: int = 0) -> None:
        self.job = job
        self.seconds = 0.0
        self.saved: list[SavedBatch] = []
        self._queue: queue.Queue | None = queue.Queue(maxsize=queue_depth) if queue_depth > 0 else None
        self._thread: threading.Thread | None = None
        self._failure: SaveFailed | None = None

    def save(self, outputs: list) -> None:
        """The engine's on_batch callback: store the batch, or hand it to the saver thread."""
        self._raise_failure()  # a failed save stops the run before it denoises another batch
        if self._queue is None:
            self._store(outputs)
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(current_job.get(),), name=f"saver-{self.job.pk}", daemon=True
            )
            self._thread.start()
        self._queue.put(outputs)  # blocks while queue_depth batches already wait

    def close(self) -> None:
        """Wait until every batch handed over is stored; raise SaveFailed if one was not."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self, job_id: str | None) -> None:
        token = current_job.set(job_id)
        try:
            while (outputs := self._queue.get()) is not _STOP:
                if self._failure is None:  # after a failure, later batches are dropped, not stored
                    try:
                        self._store(outputs)
                    except SaveFailed as failure:
                        self._failure = failure
        finally:
            connection.close()  # this thread's own database connection
            current_job.reset(token)

    def _store(self, outputs: list) -> None:
        from image_model_domain.events import events_publish, image_event

        started = time.perf_counter()
        stored = []
        for output in outputs:
            index = output.meta["index"]
            try:
                stored.append(self._store_one(output))
            except Exception as error:
                logger.exception("could not store image %s of job %s", index, self.job.pk)
                raise SaveFailed(f"Storing image {index} failed: {type(error).__name__}: {error}") from error
        events_publish([(self.job.pk, *image_event(image)) for image in stored])
        finished = time.perf_counter()
        self.seconds += finished - started
        self.saved.append(SavedBatch(tuple(o.meta["index"] for o in outputs), started, finished))

    def _store_one(self, output: Any) -> GeneratedImage:
        from services.pngmeta import png_bytes

        png = png_bytes(output.image, output.recipe)
        # A database blip is waited out; each try leaves either the file and its row or neither.
        return database_wait(
            lambda: generated_image_create(
                job=self.job,
                index=output.meta["index"],
                recipe=output.recipe,
                png=png,
                source_image_id=output.meta.get("source_image_id"),
                attempt=self.job.attempts,
            ),
            what="recording an image",
        )
