"""(g) Cross-job batching: 32 single-image jobs from 8 clients, with and without it.

Two workers of the bench's kind run side by side on queues of their own, one with
DIFFUSION_CROSS_JOB_BATCHING on and one with it off; only one has work at a time. Each round, 8 client
threads each submit 4 jobs one after another (submit, poll the row until final, submit the next), so up
to 8 jobs wait at once, as when several users work at the same time. The measure is jobs per second
from the first submit to the last job's end; rounds run in A B B A order so drifting load weighs on both.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import JOB_TIMEOUT_S, PROMPTS, QUEUE, ROOT, SCHEDULER, SEED, SIZE, STEPS, log

CLIENTS = 8
JOBS_PER_CLIENT = 4
POLL_S = 0.05  # a client polls its job 20 times a second: far more often than real clients do
TARGET_SPEEDUP = 1.15
MODES = {"batched": "true", "alone": "false"}


@dataclass
class CrossJobResult:
    jobs: int = CLIENTS * JOBS_PER_CLIENT
    clients: int = CLIENTS
    seconds: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    cpu_s: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})  # the worker's
    jobs_per_claim: list[float] = field(default_factory=list)  # batched rounds: jobs / distinct claims
    max_pixel_diff: int = -1
    load: list[float] = field(default_factory=list)  # 1-minute load average at the start and the end

    def throughput(self, mode: str) -> float:
        return self.jobs * len(self.seconds[mode]) / sum(self.seconds[mode])

    def cpu_per_job(self, mode: str) -> float:
        return sum(self.cpu_s[mode]) / (self.jobs * len(self.cpu_s[mode]))

    @property
    def speedup(self) -> float:
        return self.throughput("batched") / self.throughput("alone")

    @property
    def cpu_speedup(self) -> float:
        """The same ratio in the worker's own CPU seconds: what other work on the machine disturbs least."""
        return self.cpu_per_job("alone") / self.cpu_per_job("batched")


def run_crossjob(env: dict[str, str], model_name: str) -> CrossJobResult:
    import os

    from django.conf import settings

    from bench.environment import Worker
    from bench.streams import process_tree_cpu_s

    result = CrossJobResult(load=[os.getloadavg()[0]])
    workers = {
        mode: Worker(
            {**os.environ, **env, "LOG_LEVEL": "INFO", "DIFFUSION_CROSS_JOB_BATCHING": value},
            f"{QUEUE}-{mode}",
            ROOT / "var" / f"bench-worker-{mode}.log",
            name=f"bench-{mode}",
        )
        for mode, value in MODES.items()
    }
    default_queue = settings.DIFFUSION_DEFAULT_QUEUE
    try:
        for worker in workers.values():
            worker.start()
            settings.DIFFUSION_DEFAULT_QUEUE = worker.queue
            run_clients(worker, model_name, clients=1, jobs_per_client=1)  # warm-up: the model loads
        pixels: dict[str, dict[int, Path]] = {}
        for mode in ("batched", "alone", "alone", "batched"):
            settings.DIFFUSION_DEFAULT_QUEUE = workers[mode].queue
            cpu = process_tree_cpu_s(workers[mode].process.pid)
            seconds, rows = run_clients(workers[mode], model_name)
            result.cpu_s[mode].append(process_tree_cpu_s(workers[mode].process.pid) - cpu)
            result.seconds[mode].append(seconds)
            pixels[mode] = {index: Path(row.images.get().file.path) for index, row in rows.items()}
            if mode == "batched":
                result.jobs_per_claim.append(len(rows) / len({row.started_at for row in rows.values()}))
            log(f"(g) {mode}: {len(rows)} jobs in {seconds:.2f} s")
        result.max_pixel_diff = max(png_diff(pixels["batched"][i], pixels["alone"][i]) for i in pixels["alone"])
    finally:
        settings.DIFFUSION_DEFAULT_QUEUE = default_queue
        for worker in workers.values():
            worker.stop()
    result.load.append(os.getloadavg()[0])
    return result


def run_clients(worker, model_name: str, *, clients: int = CLIENTS, jobs_per_client: int = JOBS_PER_CLIENT):  # noqa: ANN001, ANN201
    """Seconds from the first submit until every client's last job is final, and the rows by job index."""
    from django.db import connection

    from image_model_domain.jobs import job_create_generation
    from image_model_domain.models import GenerationJob, JobStatus

    FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)  # noqa: N806
    rows: dict[int, GenerationJob] = {}
    errors: list[str] = []

    def client(number: int) -> None:
        try:
            for turn in range(jobs_per_client):
                index = number * jobs_per_client + turn
                job = job_create_generation(
                    owner=None, prompt=PROMPTS[index % len(PROMPTS)], model_name=model_name, steps=STEPS,
                    width=SIZE, height=SIZE, scheduler=SCHEDULER, seed=SEED + index,
                )  # fmt: skip
                deadline = time.perf_counter() + JOB_TIMEOUT_S
                while (row := GenerationJob.objects.get(pk=job.pk)).status not in FINAL:
                    if not worker.alive() or time.perf_counter() > deadline:
                        raise RuntimeError(f"job {job.pk} did not finish; worker log:\n{worker.output()[-4000:]}")
                    time.sleep(POLL_S)
                if row.status != JobStatus.SUCCEEDED:
                    raise RuntimeError(f"job {job.pk} ended {row.status}: {row.error}")
                rows[index] = row
        except Exception as error:  # reported by the main thread
            errors.append(str(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(errors[0])
    return seconds, rows


def png_diff(first: Path, second: Path) -> int:
    import numpy as np
    from PIL import Image

    with Image.open(first) as a, Image.open(second) as b:
        return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def crossjob_section(result: CrossJobResult) -> list[str]:
    loaded = result.load[0] > 0.5  # before the part started: other work on the machine
    verdict = "pass" if result.speedup >= TARGET_SPEEDUP else "FAIL"
    rows = [
        f"| {mode} | {' / '.join(f'{s:.2f}' for s in result.seconds[mode])} | {result.throughput(mode):.3f} "
        f"| {result.cpu_per_job(mode):.3f} |"
        for mode in MODES
    ]
    claims = sum(result.jobs_per_claim) / len(result.jobs_per_claim)
    note = (
        "The machine was loaded by other work during this run (1-minute load average "
        f"{result.load[0]:.2f} at the start,\n{result.load[-1]:.2f} at the end, on 2 cores): the seconds are "
        "noisy; the ratio was measured side by side in A B B A order."
        if loaded
        else f"1-minute load average {result.load[0]:.2f} at the start, {result.load[-1]:.2f} at the end."
    )
    return [
        "## (g) cross-job batching: 32 single-image jobs from 8 clients",
        "",
        f"{result.clients} client threads each submit {result.jobs // result.clients} text-to-image jobs one "
        f"after another (128x128, {STEPS} steps,",
        f"`{SCHEDULER}`, one image each, each job its own prompt and seed), to a worker with",
        "`DIFFUSION_CROSS_JOB_BATCHING` on and to one with it off (batches of 4, the default",
        "`DIFFUSION_BATCH_SIZE`); rounds in A B B A order. Seconds run from the first submit to the last job's",
        "end. `python -m bench.run --only-batching` runs this part alone.",
        "",
        "| mode | seconds per round | jobs/s | worker CPU s per job |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"crossjob_speedup = **{result.speedup:.3f}** (target >= {TARGET_SPEEDUP}: **{verdict}**); in the worker's",
        f"own CPU seconds per job: **{result.cpu_speedup:.3f}x**; {claims:.2f} jobs per claim on average in the",
        f"batched rounds. The same job's PNGs differ by at most {result.max_pixel_diff}/255 per channel between",
        "the modes (same seeds and prompts; only the batch shape of float reductions differs).",
        note,
        "",
    ]


def crossjob_line(result: CrossJobResult) -> str:
    return f"crossjob_speedup={result.speedup:.3f} crossjob_cpu_speedup={result.cpu_speedup:.3f}"
