"""(e) submit latency: 32 concurrent clients POST /api/v1/generations/ to the production web command
(`gunicorn -c config/gunicorn.py`) on 127.0.0.1, with the workers idle and while 2 workers generate;
the configured server (gthread) side by side with the former 2 sync workers.

Bounded: each client sends one untimed warm-up request, then REQUESTS_PER_CLIENT timed ones, and a
phase stops at PHASE_LIMIT_S whatever is left. Submitted jobs go to a queue no worker reads (a sink),
so the workers' own work is the same in both servers' phases; the sink is emptied after each phase.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from bench.common import MODELS, QUEUE, REDIS_URL, ROOT, log
from bench.environment import Worker, database_vacuum

CLIENTS = 32
REQUESTS_PER_CLIENT = 10
PHASE_LIMIT_S = 90.0
SINK = "bench-web-sink"
SERVERS = ("gthread", "sync")
BUSY_WORKERS = 2
PACE_S = 1.0  # paced phases: each client sends one request a second (32 requests/s offered)
TARGET_IDLE_P99_MS = 50.0
TARGET_BUSY_P99_MS = 200.0


@dataclass
class Phase:
    server: str
    busy: bool
    paced: bool  # each client sends once every PACE_S (open loop) instead of back to back
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    unfinished: int = 0  # requests not sent when PHASE_LIMIT_S ran out
    generating: int = 0  # busy phases: workers still running a job when the phase ended

    @property
    def per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class WebResult:
    phases: list[Phase] = field(default_factory=list)
    load: list[tuple[float, float, float]] = field(default_factory=list)

    def phase(self, server: str, busy: bool, paced: bool = True) -> Phase:
        return next(p for p in self.phases if p.server == server and p.busy == busy and p.paced == paced)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def web_server(env: dict[str, str], server: str, *, queue: str = SINK) -> Iterator[int]:
    """The production web command with WEB_SERVER=server on a free local port; jobs go to `queue`."""
    port = free_port()
    server_env = {
        **os.environ, **env, "WEB_SERVER": server, "WEB_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "2",
        "DIFFUSION_DEFAULT_QUEUE": queue, "API_ALLOW_ANONYMOUS": "true", "API_SUBMISSION_RATE": "1000000/minute",
        "API_MAX_QUEUED_JOBS_PER_ANONYMOUS_IP": "1000000", "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    log_path = ROOT / "var" / f"bench-web-{server}.log"
    with log_path.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"],
            cwd=ROOT, env=server_env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({server}) did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def load(port: int, phase: Phase) -> None:
    """CLIENTS threads, each with a keep-alive connection, released together; every request timed."""
    body = json.dumps({"prompt": "a lighthouse at dusk", "model": MODELS[0], "steps": 20}).encode()
    headers = {"Content-Type": "application/json"}
    ready = threading.Barrier(CLIENTS + 1)
    lock = threading.Lock()
    deadline = [0.0]

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        times, errors, unsent = [], 0, 0

        def submit() -> bool:
            try:
                connection.request("POST", "/api/v1/generations/", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                return response.status == 202
            except (OSError, http.client.HTTPException):
                connection.close()
                return False

        submit()  # warm-up: the connection and the worker's first request are not timed
        offset = random.uniform(0, PACE_S)  # clients spread over the interval, as independent users are
        ready.wait()
        begin = time.monotonic()
        for index in range(REQUESTS_PER_CLIENT):
            if phase.paced:
                time.sleep(max(0.0, begin + offset + index * PACE_S - time.monotonic()))
            if time.monotonic() > deadline[0]:
                unsent = REQUESTS_PER_CLIENT - index
                break
            started = time.perf_counter()
            ok = submit()
            if ok:
                times.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1
        connection.close()
        with lock:
            phase.latencies_ms.extend(times)
            phase.errors += errors
            phase.unfinished += unsent

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + PHASE_LIMIT_S
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started


def sink_empty() -> None:
    import redis

    from image_model_domain.models import GenerationJob

    GenerationJob.objects.filter(queue=SINK).delete()
    redis.Redis.from_url(REDIS_URL).delete(SINK)
    database_vacuum()


@contextmanager
def busy_workers(env: dict[str, str]) -> Iterator[None]:
    """BUSY_WORKERS worker processes, each running a long job on the bench queue."""
    from image_model_domain.jobs import job_cancel, job_create_generation
    from image_model_domain.models import ACTIVE_STATUSES, GenerationJob

    workers = [
        Worker({**os.environ, **env, "LOG_LEVEL": "WARNING"}, QUEUE, ROOT / "var" / f"bench-web-{i}.log", f"web{i}")
        for i in range(BUSY_WORKERS)
    ]
    jobs = []
    try:
        for worker in workers:
            worker.start()
        jobs = [
            job_create_generation(owner=None, model_name=MODELS[0], prompt="keep busy", steps=20, num_images=96, seed=i)
            for i in range(BUSY_WORKERS * 2)
        ]
        deadline = time.monotonic() + 120
        while GenerationJob.objects.filter(pk__in=[job.pk for job in jobs], status="running").count() < BUSY_WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError("the busy workers did not start their jobs")
            time.sleep(0.2)
        time.sleep(3)  # past the model load: generating
        yield
    finally:
        for job in GenerationJob.objects.filter(pk__in=[job.pk for job in jobs], status__in=ACTIVE_STATUSES):
            job_cancel(job=job)  # a job that ended (one that failed, say) has nothing to cancel
        for worker in workers:
            worker.stop()


def run_web(env: dict[str, str]) -> WebResult:
    result = WebResult()
    for busy in (False, True):
        with busy_workers(env) if busy else nullcontext():
            for server in SERVERS:
                with web_server(env, server) as port:
                    for paced in (True, False):
                        phase = Phase(server=server, busy=busy, paced=paced)
                        result.load.append(os.getloadavg())
                        load(port, phase)
                        if busy:
                            from image_model_domain.models import GenerationJob

                            mine = GenerationJob.objects.filter(
                                queue=QUEUE, status="running", worker__contains=f"-{os.getpid()}@"
                            )
                            phase.generating = mine.values("worker").distinct().count()
                        sink_empty()
                        log(
                            f"(e) {server} {'busy' if busy else 'idle'} {'paced' if paced else 'back to back'}: "
                            f"p50 {phase.percentile(50):.0f} ms, p99 {phase.percentile(99):.0f} ms, "
                            f"{phase.per_second:.0f}/s, {len(phase.latencies_ms)} ok, {phase.errors} errors"
                        )
                        result.phases.append(phase)
    return result


def web_section(result: WebResult) -> list[str]:
    """The report's part (e)."""
    lines = [
        "## (e) submit latency: 32 concurrent clients against the web command",
        "",
        f"`gunicorn -c config/gunicorn.py` on 127.0.0.1, 2 worker processes; {CLIENTS} client threads in the",
        "bench process (on the same 2 cores), each with a keep-alive connection, one untimed warm-up POST then",
        f"{REQUESTS_PER_CLIENT} timed `POST /api/v1/generations/` (JSON text-to-image, 202 with the job) each;",
        f"a phase stops after {PHASE_LIMIT_S:g} s. *Paced*: each client sends one request every {PACE_S:g} s",
        f"(clients spread over the second: {CLIENTS / PACE_S:.0f} requests/s offered), the targets apply here.",
        "*Back to back*: each client sends its next request as soon as the last is answered, which measures",
        "capacity (requests/s); latency there is clients / capacity by construction. The jobs go to a queue no",
        'worker reads. "2 generating": 2 `celery worker` processes generate 128x128 images (`small-sd-a`,',
        "20 steps) on the same 2 cores throughout (the count: workers still generating at the phase's end).",
        "`gthread` is the configured server (`WEB_THREADS` threads",
        "per process); `sync` is the former command (2 sync workers), measured side by side in the same run.",
        "",
        "| server | workers | clients | requests ok | errors | requests/s | p50 ms | p99 ms | max ms | target p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase in result.phases:
        target = TARGET_BUSY_P99_MS if phase.busy else TARGET_IDLE_P99_MS
        p99 = phase.percentile(99)
        if not phase.paced or phase.server != "gthread":
            verdict = ""
        else:
            verdict = f"< {target:g}: " + ("**pass**" if p99 < target and not phase.errors else "**FAIL**")
        unsent = f" ({phase.unfinished} unsent)" if phase.unfinished else ""
        lines.append(
            f"| {phase.server} | {f'{phase.generating} generating' if phase.busy else 'idle'} | "
            f"{'paced' if phase.paced else 'back to back'} | {len(phase.latencies_ms)}{unsent} | {phase.errors} | "
            f"{phase.per_second:.0f} | {phase.percentile(50):.0f} | {p99:.0f} | "
            f"{max(phase.latencies_ms, default=float('nan')):.0f} | {verdict} |"
        )
    lines.append("")
    for busy in (False, True):
        for paced in (True, False):
            gthread, sync = result.phase("gthread", busy, paced), result.phase("sync", busy, paced)
            lines.append(
                f"- {'2 workers generating' if busy else 'workers idle'}, {'paced' if paced else 'back to back'}: "
                f"sync / gthread = {sync.percentile(99) / gthread.percentile(99):.1f}x at p99, "
                f"{sync.percentile(50) / gthread.percentile(50):.1f}x at p50; "
                f"gthread / sync = {gthread.per_second / sync.per_second:.1f}x in requests/s."
            )
    loads = ", ".join(f"{one:.2f}" for one, _, _ in result.load)
    lines.append(f"- Load average (1 min) at the start of each phase, in table order: {loads}.")
    cores = os.cpu_count() or 1
    if max((one for one, _, _ in result.load), default=0.0) > 2 * cores:
        lines.append(
            f"- Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on a busy machine (load above twice its"
            f" {cores} cores, from other processes): absolute latencies are well above a quiet machine's; the"
            " ratios, measured side by side, are the finding."
        )
    lines.append("")
    return lines


def web_line(result: WebResult) -> str:
    idle, busy = result.phase("gthread", False), result.phase("gthread", True)
    return (
        f"submit_p99_idle_ms={idle.percentile(99):.0f} submit_p99_busy_ms={busy.percentile(99):.0f} "
        f"sync_over_gthread_p99_busy={result.phase('sync', True).percentile(99) / busy.percentile(99):.1f}"
    )
