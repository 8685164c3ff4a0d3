"""(f) Many clients on a job's event stream: does serving them slow the job down?

The web tier runs as production runs it with WEB_SERVER=asgi (`gunicorn -c config/gunicorn.py`, one uvicorn
worker) on the bench's
database and Redis. Each round runs the same job twice, alone and with STREAM_CLIENTS clients connected
to its /events/ stream from the submit to the final event (every step is fanned out to every client),
in alternating order; the measure is the job's own inference_s, as the worker records it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.common import JOB_TIMEOUT_S, PROMPT, ROOT, SCHEDULER, SEED, SIZE, log, median

STREAM_CLIENTS = 50
STREAM_STEPS = 40  # twice (b)'s steps: more step events to fan out, and a longer run to time
STREAM_ROUNDS = 5
TARGET_STREAM_SLOWDOWN = 0.05
SERVER_LOG = ROOT / "var" / "bench-web.log"
FINAL = (b"finished", b"failed", b"cancelled")


@dataclass
class StreamsResult:
    clients: int
    alone_s: list[float] = field(default_factory=list)
    watched_s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # watched / alone, per round
    events_per_client: list[int] = field(default_factory=list)
    complete_clients: list[int] = field(default_factory=list)  # clients that got the final event, per round
    server_cpu_s: list[float] = field(default_factory=list)  # the web server's CPU seconds per watched job
    setup_cpu_s: list[float] = field(default_factory=list)  # ...of which from the submit to all clients connected
    database_cpu_s: list[float] = field(default_factory=list)  # the whole local PostgreSQL server's, per watched job
    database_alone_cpu_s: list[float] = field(default_factory=list)  # ...per job run alone (the worker's writes)
    steps_at_connect: list[int] = field(default_factory=list)  # denoising steps done when all clients were connected
    clients_cpu_s: list[float] = field(default_factory=list)  # this process's CPU while its clients read, per job
    connect_ms: list[float] = field(default_factory=list)  # submit -> all clients connected
    load: list[float] = field(default_factory=list)  # 1-minute load average at the start and the end

    @property
    def slowdown(self) -> float:
        return median(self.ratios) - 1.0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def asgi_server(env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """gunicorn with one uvicorn worker on a free port: (port, pid of the master)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"]  # the production web command
    env = {**env, "WEB_SERVER": "asgi", "WEB_WORKERS": "1", "WEB_BIND": f"127.0.0.1:{port}"}
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with SERVER_LOG.open("w") as handle:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bench web server did not start:\n{SERVER_LOG.read_text()[-4000:]}")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the gunicorn master and its worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = f"/proc/{pid}/task/{pid}/children"
    if os.path.exists(children):
        with open(children) as handle:
            pids += [int(child) for child in handle.read().split()]
    for each in pids:
        try:
            with open(f"/proc/{each}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total


def database_cpu_s() -> float | None:
    """User + system CPU seconds of the local PostgreSQL server: its processes and the backends it has reaped.

    A stream that opened a database connection cost a backend's start (several ms) there, outside the web
    server's own CPU. The whole server is counted, so other clients of it add to the number. None when no
    PostgreSQL process is visible (a remote database).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                name, rest = handle.read().split(" (", 1)[1].rsplit(")", 1)
        except (FileNotFoundError, IndexError, ValueError):
            continue
        if name != "postgres":
            continue
        fields = rest.split()
        found = True
        total += (int(fields[11]) + int(fields[12])) / ticks
        if fields[1] == "1" or not _is_postgres(fields[1]):  # the postmaster: the backends it reaped
            total += (int(fields[13]) + int(fields[14])) / ticks
    return total if found else None


def _is_postgres(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip() == "postgres"
    except FileNotFoundError:
        return False


class Connected:
    """When each client's stream answered; `all` is set when the last one did."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.times: list[float] = []
        self.all = asyncio.Event()

    def add(self) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) == self.clients:
            self.all.set()


async def watch(port: int, job_id: Any, connected: Connected) -> tuple[int, bool]:
    """One client: the stream from its start to the final event; (events received, saw the final one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/v1/jobs/{job_id}/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    events, final = 0, False
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the stream answered {status!r}")
        connected.add()
        while line := await reader.readline():
            if line.startswith(b"event: "):
                events += 1
                if line[7:].strip() in FINAL:
                    final = True
                    break
    finally:
        writer.close()
    return events, final


@dataclass
class Watched:
    job: Any
    results: list[tuple[int, bool]]  # per client: events received, saw the final one
    connect_ms: float  # submit -> all clients connected
    setup_cpu_s: float  # the web server's CPU from the submit to all clients connected
    steps_at_connect: int  # denoising steps the job had done by then


async def watched_job(port: int, server_pid: int, model_name: str, clients: int) -> Watched:
    from asgiref.sync import sync_to_async

    cpu = process_tree_cpu_s(server_pid)
    submitted = time.perf_counter()
    job = await sync_to_async(submit)(model_name)
    connected = Connected(clients)

    async def at_connect() -> tuple[float, int]:
        await connected.all.wait()
        setup = process_tree_cpu_s(server_pid) - cpu
        return setup, await sync_to_async(steps_done)(job.pk)

    probe = asyncio.create_task(at_connect())
    results = await asyncio.wait_for(
        asyncio.gather(*(watch(port, job.pk, connected) for _ in range(clients))), JOB_TIMEOUT_S
    )
    setup_cpu_s, steps = await probe if connected.all.is_set() else (float("nan"), 0)
    probe.cancel()
    connect_ms = (max(connected.times) - submitted) * 1000 if connected.times else float("nan")
    return Watched(job, results, connect_ms, setup_cpu_s, steps)


def steps_done(job_id: Any) -> int:
    from image_model_domain.models import GenerationJob

    return GenerationJob.objects.values_list("progress_step", flat=True).get(pk=job_id)


def submit(model_name: str) -> Any:
    from image_model_domain.jobs import job_create_generation

    return job_create_generation(
        owner=None, prompt=PROMPT, model_name=model_name, steps=STREAM_STEPS, width=SIZE, height=SIZE,
        scheduler=SCHEDULER, seed=SEED,
    )  # fmt: skip


def finished_row(job_id: Any, worker: Any) -> Any:
    from image_model_domain.models import GenerationJob, JobStatus

    started = time.perf_counter()
    while True:
        row = GenerationJob.objects.get(pk=job_id)
        if row.status == JobStatus.SUCCEEDED:
            return row
        if row.status in (JobStatus.FAILED, JobStatus.CANCELLED) or not worker.alive():
            raise RuntimeError(f"job {job_id} ended {row.status}: {row.error}\n{worker.output()[-4000:]}")
        if time.perf_counter() - started > JOB_TIMEOUT_S:
            raise RuntimeError(f"job {job_id} did not finish")
        time.sleep(0.1)  # light: a client polling every 100 ms, not the bench disturbing the run


def run_streams(
    worker: Any, env: dict[str, str], model_name: str, clients: int = STREAM_CLIENTS, rounds: int = STREAM_ROUNDS
) -> StreamsResult:
    result = StreamsResult(clients=clients, load=[os.getloadavg()[0]])
    log(f"(f) {clients} event streams on a running job: starting the ASGI web server")
    with asgi_server(env) as (port, server_pid):
        finished_row(submit(model_name).pk, worker)  # warm: the model is loaded, first calls made
        asyncio.run(watched_job(port, server_pid, model_name, 2))
        for round_ in range(rounds):
            pair: dict[str, float] = {}
            for watched in (round_ % 2 == 0, round_ % 2 == 1):
                if watched:
                    cpu, database = process_tree_cpu_s(server_pid), database_cpu_s()
                    clients_cpu = time.process_time()
                    run = asyncio.run(watched_job(port, server_pid, model_name, clients))
                    result.clients_cpu_s.append(time.process_time() - clients_cpu)
                    row = finished_row(run.job.pk, worker)
                    result.server_cpu_s.append(process_tree_cpu_s(server_pid) - cpu)
                    if database is not None and (database_after := database_cpu_s()) is not None:
                        result.database_cpu_s.append(database_after - database)
                    result.setup_cpu_s.append(run.setup_cpu_s)
                    result.steps_at_connect.append(run.steps_at_connect)
                    result.events_per_client.append(round(median([events for events, _ in run.results])))
                    result.complete_clients.append(sum(final for _, final in run.results))
                    result.connect_ms.append(run.connect_ms)
                    result.watched_s.append(row.inference_s)
                else:
                    database = database_cpu_s()
                    row = finished_row(submit(model_name).pk, worker)
                    if database is not None and (database_after := database_cpu_s()) is not None:
                        result.database_alone_cpu_s.append(database_after - database)
                    result.alone_s.append(row.inference_s)
                pair["watched" if watched else "alone"] = row.inference_s
            result.ratios.append(pair["watched"] / pair["alone"])
            log(f"(f) round {round_ + 1}: alone {pair['alone']:.3f} s, watched {pair['watched']:.3f} s")
    result.load.append(os.getloadavg()[0])
    return result


def streams_section(result: StreamsResult) -> list[str]:
    return [
        f"## (f) {result.clients} clients on a running job's event stream",
        "",
        f"One {SIZE}x{SIZE} text-to-image job, {STREAM_STEPS} steps, run alone and with {result.clients} clients",
        "reading its `GET /api/v1/jobs/{id}/events/` stream from the submit to the final event (a `progress` event",
        "per step to every client), in alternating order. The web tier is `WEB_SERVER=asgi WEB_WORKERS=1 gunicorn -c",
        "config/gunicorn.py` (one uvicorn worker) on the same 2 cores as the worker, PostgreSQL,",
        "Redis and the clients themselves (asyncio, in the bench process). The measure is the job's own",
        "`inference_s`, as the worker records it. 1-minute load average at the start and the end of this part: "
        + " / ".join(f"{value:.2f}" for value in result.load)
        + ".",
        "",
        "| measure | median | min | max |",
        "| --- | ---: | ---: | ---: |",
        _row("inference_s alone, s", result.alone_s),
        _row(f"inference_s with {result.clients} streams, s", result.watched_s),
        _row("watched / alone, per round", result.ratios),
        _row("web server CPU per watched job, s", result.server_cpu_s),
        _row(f"... of which submit -> all {result.clients} clients connected, s", result.setup_cpu_s),
        *(
            [
                _row("PostgreSQL server CPU per job alone, s", result.database_alone_cpu_s),
                _row("PostgreSQL server CPU per watched job, s", result.database_cpu_s),
            ]
            if result.database_cpu_s and result.database_alone_cpu_s
            else []
        ),
        _row(f"the bench's {result.clients} clients' CPU per watched job, s", result.clients_cpu_s),
        _row(f"submit -> all {result.clients} clients connected, ms", result.connect_ms, ".0f"),
        _row(f"denoising steps done when all {result.clients} were connected", result.steps_at_connect, ".0f"),
        "",
        "The clients connect right after the submit, while the worker starts the job: their set-up (authentication,",
        "the owner-only lookup of the job, the stream's history) falls in the job's first steps and counts against",
        "it. The PostgreSQL rows count the whole local server (the worker's writes, and any other client of it).",
        "",
        f"Each client received a median of {median(result.events_per_client):.0f} events per job; clients that got",
        f"the final event, per round: {', '.join(map(str, result.complete_clients))} of {result.clients}.",
        f"Slowdown of the job with {result.clients} streams: **{result.slowdown:+.1%}** (median of the per-round",
        "ratios). The web server's CPU per watched job is the cost that matters on a busy machine: it is taken",
        "from whatever else runs on these 2 cores. When other work shares the machine (a load average above 2),",
        "the per-round ratios spread far wider than 5% either way and the median says little on its own.",
        "",
        f"Target: {result.clients} streams slow a running job by at most {TARGET_STREAM_SLOWDOWN:.0%}: "
        f"{result.slowdown:+.1%}, {'**pass**' if result.slowdown <= TARGET_STREAM_SLOWDOWN else '**FAIL**'}.",
        "",
    ]


def streams_line(result: StreamsResult) -> str:
    return f"stream_slowdown={result.slowdown:.3f} stream_server_cpu_s={median(result.server_cpu_s):.3f}"


def _row(name: str, values: list[float], spec: str = ".3f") -> str:
    return f"| {name} | {median(values):{spec}} | {min(values):{spec}} | {max(values):{spec}} |"
