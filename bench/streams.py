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
from pathlib import Path
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


async def watch(port: int, job_id: Any, connected: list[float]) -> tuple[int, bool]:
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
        connected.append(time.perf_counter())
        while line := await reader.readline():
            if line.startswith(b"event: "):
                events += 1
                if line[7:].strip() in FINAL:
                    final = True
                    break
    finally:
        writer.close()
    return events, final


async def watched_job(port: int, model_name: str, clients: int) -> tuple[Any, list[tuple[int, bool]], float]:
    from asgiref.sync import sync_to_async

    submitted = time.perf_counter()
    job = await sync_to_async(submit)(model_name)
    connected: list[float] = []
    results = await asyncio.wait_for(
        asyncio.gather(*(watch(port, job.pk, connected) for _ in range(clients))), JOB_TIMEOUT_S
    )
    connect_ms = (max(connected) - submitted) * 1000 if connected else float("nan")
    return job, results, connect_ms


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
        asyncio.run(watched_job(port, model_name, 2))
        for round_ in range(rounds):
            pair: dict[str, float] = {}
            for watched in (round_ % 2 == 0, round_ % 2 == 1):
                if watched:
                    cpu = process_tree_cpu_s(server_pid)
                    job, results, connect_ms = asyncio.run(watched_job(port, model_name, clients))
                    row = finished_row(job.pk, worker)
                    result.server_cpu_s.append(process_tree_cpu_s(server_pid) - cpu)
                    result.events_per_client.append(round(median([events for events, _ in results])))
                    result.complete_clients.append(sum(final for _, final in results))
                    result.connect_ms.append(connect_ms)
                    result.watched_s.append(row.inference_s)
                else:
                    row = finished_row(submit(model_name).pk, worker)
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
        _row(f"submit -> all {result.clients} clients connected, ms", result.connect_ms, ".0f"),
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


def streams_splice(path: Path, lines: list[str]) -> None:
    """Put part (f) into an existing report: replace its section, or add it before the targets."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    existing = text.split("\n")
    start = next((i for i, line in enumerate(existing) if line.startswith("## (f)")), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(existing)) if existing[i].startswith("## ")), len(existing))
    else:
        start = end = next((i for i, line in enumerate(existing) if line.startswith("## Targets")), len(existing))
    path.write_text("\n".join(existing[:start] + lines + existing[end:]))


def _row(name: str, values: list[float], spec: str = ".3f") -> str:
    return f"| {name} | {median(values):{spec}} | {min(values):{spec}} | {max(values):{spec}} |"
