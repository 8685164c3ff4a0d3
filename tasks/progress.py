"""The running jobs' progress I/O on a thread of its own, so the denoising loop never waits on it.

Each denoising step, the run only counts (ProgressReporter.advance) and wakes the pump. The pump's
thread syncs each watched job that has counted steps (progress and heartbeat written when due, the
cancel flag read, one `progress` event per counted step published) at most every TICK_S, and at least
every JOB_PROGRESS_INTERVAL_S, which keeps the heartbeat of jobs waiting for a later pipeline call.
Inline, those round trips to PostgreSQL and Redis took 1-2 ms a step inside the model run (37 ms of a
20-step job on the bench's CPU, docs/benchmarks.md); a GPU step of a 512x512 image takes ~15 ms. A
cancel is seen at the first step after the pump has read the flag: within TICK_S and a step.

After a claim, the pump also tells the jobs still queued their new positions (up to 500 events: ~40 ms
on the bench's CPU with a deep queue, which the claimed job's model run would otherwise wait for).

One pump per worker process: a thread that waits while there is nothing to do, its database connection closed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from image_model_domain.events import positions_publish
from image_model_domain.lifecycle import ProgressReporter

logger = logging.getLogger(__name__)

TICK_S = 0.05  # the shortest time between two syncs of a job: at most 20 cancel reads a second each


class ProgressPump:
    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._reporters: list[ProgressReporter] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._positions_due = False

    def watch(self, reporter: ProgressReporter) -> None:
        with self._lock:
            self._reporters.append(reporter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress-pump", daemon=True)
                self._thread.start()
        self._wake.set()

    def positions_changed(self) -> None:
        """A job left the queue: the pump tells the jobs still queued their new positions (once for several)."""
        self._positions_due = True
        self.wake()

    def wake(self) -> None:
        """Steps were counted: sync soon (within tick_s of the last sync)."""
        self._wake.set()

    def unwatch(self, reporter: ProgressReporter) -> None:
        """Stop syncing the job; its last sync runs here, after any the pump is doing, so every step is out."""
        with self._lock:
            if reporter not in self._reporters:
                return
            self._reporters.remove(reporter)
        reporter.sync(last=True)

    def _run(self) -> None:
        while True:
            with self._lock:
                idle = not self._reporters and not self._positions_due
            if idle:  # until the next job, without a database connection (as the saver's thread, one per job)
                connection.close()
                self._wake.wait()
            else:  # a step, or the heartbeat interval
                self._wake.wait(timeout=settings.JOB_PROGRESS_INTERVAL_S)
            self._wake.clear()
            if self._positions_due:
                self._positions_due = False
                self._guarded(positions_publish, "queue positions not published")
            with self._lock:
                reporters = list(self._reporters)
            now = time.monotonic()
            for reporter in reporters:
                if reporter.sync_due(now):
                    self._guarded(reporter.sync, f"progress of job {reporter.job_id} not synced")
            time.sleep(self.tick_s)  # steps counted meanwhile leave the event set: the next sync is at once

    @staticmethod
    def _guarded(work: Callable[[], None], failure: str) -> None:
        try:
            work()
        except Exception:  # noqa: BLE001 (the pump outlives any one job's trouble)
            logger.exception(failure)


_pump: tuple[int, ProgressPump] | None = None
_pump_lock = threading.Lock()


def pump() -> ProgressPump:
    """This process's pump: a forked child gets its own (its parent's thread did not come with it)."""
    global _pump
    with _pump_lock:
        if _pump is None or _pump[0] != os.getpid():
            _pump = (os.getpid(), ProgressPump())
        return _pump[1]
