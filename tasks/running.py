"""Running claimed jobs through services/: one job, or several jobs of one kind sharing their batches.

Jobs claimed together (image_model_domain/lifecycle.py jobs_claim) run as one request: their images
denoise in the same pipeline calls, each with its own seed's generator, so each job's pixels are
those it gets alone. Each job keeps its own progress, cancel flag, saver and outcome: a cancelled
job is finished at once and its images still in the pipeline are dropped, while the others go on.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from image_model_domain.lifecycle import ProgressReporter, job_finish
from image_model_domain.models import GenerationJob, JobStatus
from tasks.outage import database_wait
from tasks.progress import pump
from tasks.saving import ImageRecorder, SaveFailed
from tasks.specs import engine, job_requests

logger = logging.getLogger(__name__)


@dataclass
class JobRun:
    """How a claimed job ended, with when each batch denoised and when it was stored (perf_counter)."""

    status: str
    error: str
    inference_s: float
    batches: list[tuple[float, float]] = field(default_factory=list)
    saved: list = field(default_factory=list)


class _Member:
    """One job of a run: its saver, its progress, and its outcome once it has one."""

    def __init__(self, job: GenerationJob) -> None:
        self.job = job
        self.recorder = ImageRecorder(job, queue_depth=settings.DIFFUSION_SAVE_QUEUE_DEPTH)
        self.reporter = ProgressReporter(str(job.pk), job.progress_total, attempt=job.attempts)
        pump().watch(self.reporter)
        self.status, self.error = JobStatus.SUCCEEDED, ""
        self.stopped = False  # cancelled or failed: nothing more of it is stored
        self.finished = False
        self.pending = 0  # its images not yet out of the pipeline

    def stop(self, status: str, error: str) -> None:
        if not self.stopped:
            self.stopped, self.status, self.error = True, status, error


def job_run(job: GenerationJob) -> JobRun:
    """Run one claimed job to its final status; images are stored by a background saver meanwhile."""
    return jobs_run([job])[0]


def jobs_run(jobs: list[GenerationJob]) -> list[JobRun]:
    """Run claimed jobs to their final statuses, several as one request when they were claimed together."""
    from services.types import Cancelled

    members = [_Member(job) for job in jobs]
    requests = _requests(members)
    for member in members:
        if member.stopped:  # its requests could not be built: it fails now, not after the others' run
            _finish(member, {"load_s": 0.0, "inference_s": 0.0})
    in_call: list[tuple[_Member, int]] = []  # the jobs the running pipeline call holds, with their image counts
    stats_total = {"load_s": 0.0, "inference_s": 0.0}
    batches: list[tuple[float, float]] = []

    def on_batch_start(metas: list[dict]) -> None:
        in_call[:] = [(members[position], count) for position, count in Counter(m["job"] for m in metas).items()]

    def on_step(increment: int) -> bool:
        # Counting only: the pump's thread writes progress and reads the cancel flags (tasks/progress.py).
        for member, count in in_call:
            if not member.stopped and not member.reporter.advance(count if increment else 0):
                member.stop(JobStatus.CANCELLED, "Cancelled while running.")
                _finish(member, stats_total)  # at once: the others' images may still be denoising
        pump().wake()
        # Jobs whose images wait for a later pipeline call (another size or prompt length): alive too, so the
        # pump keeps their heartbeat (or the reconciler would think their worker dead); a cancel stops them.
        holding = [member for member, _ in in_call]
        for member in members:
            if member.pending and member not in holding and not member.stopped and not member.reporter.advance(0):
                member.stop(JobStatus.CANCELLED, "Cancelled while waiting for its batch.")
                _finish(member, stats_total)
        return not all(member.stopped for member in members)

    def on_batch(outputs: list) -> None:
        for position, member in enumerate(members):
            mine = [output for output in outputs if output.meta["job"] == position]
            member.pending -= len(mine)
            if mine and not member.stopped:
                try:
                    member.recorder.save(mine)
                except SaveFailed as failure:
                    member.stop(JobStatus.FAILED, str(failure))

    def on_preview(images: list) -> None:
        for position, member in enumerate(members):
            mine = [(meta, jpeg) for meta, jpeg in images if meta["job"] == position]
            if mine and not member.stopped:
                member.reporter.preview(mine)

    try:
        for request in requests:
            stats = engine().generate(
                request, on_step=on_step, on_batch=on_batch, on_preview=on_preview, on_batch_start=on_batch_start
            )
            stats_total["load_s"] += stats.load_s
            stats_total["inference_s"] += stats.inference_s
            batches += stats.batches
    except Cancelled:
        pass  # every job has stopped, each with its own reason
    except Exception as failure:  # recorded on each job still running; the worker lives on
        for member in members:
            member.stop(JobStatus.FAILED, failure_message(failure, member.job))
    except BaseException:  # the process is stopping: its pump must not keep the jobs it leaves looking alive
        for member in members:
            pump().unwatch(member.reporter)
        raise
    for member in members:
        _finish(member, stats_total)
    return [
        JobRun(member.status, member.error, stats_total["inference_s"], batches, member.recorder.saved)
        for member in members
    ]


def _requests(members: list[_Member]) -> list:
    """Each job's requests, every item tagged with its job; jobs claimed together merge into one request."""
    requests = []
    for position, member in enumerate(members):
        try:
            own = job_requests(member.job)
        except Exception as failure:
            member.stop(JobStatus.FAILED, failure_message(failure, member.job))
            continue
        for request in own:
            for item in request.items:
                item.meta = {**item.meta, "job": position}
            member.pending += len(request.items)
        requests += own
    if len(requests) > 1 and len(members) > 1:  # claimed together: one model, scheduler, size (batch_key)
        items = [item for request in requests for item in request.items]
        requests = [replace(requests[0], items=items, batch_size=settings.DIFFUSION_BATCH_SIZE)]
    return requests


def failure_message(failure: BaseException, job: GenerationJob) -> str:
    from services.types import ModelUnavailable, OutOfMemory

    if isinstance(failure, SoftTimeLimitExceeded):
        return f"Took longer than the {settings.JOB_SOFT_TIME_LIMIT_S} s limit."
    if isinstance(failure, ModelUnavailable | OutOfMemory | LookupError | ValueError | SaveFailed):
        return str(failure)
    logger.error("job %s failed", job.pk, exc_info=failure)
    return f"{type(failure).__name__}: {failure}"


def _finish(member: _Member, stats: dict[str, float]) -> None:
    """Record a job's outcome once every image handed to its saver is stored (or has failed to be)."""
    if member.finished:
        return
    member.finished = True
    job = member.job
    pump().unwatch(member.reporter)  # its last progress is written and published before its outcome
    try:
        member.recorder.close()
    except SaveFailed as failure:
        if member.status == JobStatus.SUCCEEDED:
            member.status, member.error = JobStatus.FAILED, str(failure)
    # Images are written; a database blip now must not lose the outcome (the reconciler would run it again).
    if member.status == JobStatus.SUCCEEDED:
        database_wait(
            lambda: GenerationJob.objects.filter(pk=job.pk, attempts=job.attempts).update(
                progress_step=job.progress_total
            ),
            what="recording the final step",
        )
    database_wait(
        lambda: job_finish(
            job_id=job.pk,
            status=member.status,
            error=member.error,
            attempt=job.attempts,
            save_s=member.recorder.seconds,
            **stats,
        ),
        what="recording the outcome",
    )
