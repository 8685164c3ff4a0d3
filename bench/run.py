"""Benchmarks on the "small" development checkpoints; writes docs/benchmarks.md.

    python -m bench.run                    # CPU, ~2-4 minutes; the last line holds the headline numbers
    python -m bench.run --repeats 8 --threads 2
    python -m bench.run --gpu              # SD-1.5 shape on CUDA, and the service end to end; docs/benchmarks-gpu.md
    python -m bench.run --gpu-smoke        # every step of --gpu on the CPU (tiny checkpoint), no measurement

(a) the bare services/ call, (b) the same job through PostgreSQL, Redis and a Celery worker process, and
through HTTP (the web command: submit, poll, download the PNG),
(c) a mixed workload over three checkpoints and two LoRAs (counting reloads after warm-up), and
(d) random diffusion (img2img) batched against one by one, (e) submit latency of the web command under
32 concurrent clients (`--only-web` runs (e) alone), and (f) a job alone against the same job with 50
clients on its event stream (`--only-streams` runs (f) alone), and (g) 32 single-image jobs from 8 clients
with cross-job batching on and off (`--only-batching` runs (g) alone). The bench has its own database, Redis
database, queue and media folder (overridable with BENCH_DATABASE_URL and BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.batching import run_batching
from bench.common import DATABASE_URL, DOCS, MODELS, QUEUE, ROOT, log, lora_specs, model_specs
from bench.crossjob import crossjob_line, crossjob_section, run_crossjob
from bench.environment import (
    bench_environment,
    database_ensure,
    django_prepare,
    quiet_libraries,
    running_worker,
    worker_torch_threads,
)
from bench.gpu import run_gpu
from bench.mixed import run_mixed
from bench.overhead import run_overhead
from bench.report import Context, final_line, section_splice, write_report
from bench.streams import STREAM_CLIENTS, run_streams, streams_line, streams_section
from bench.web import run_web, web_line, web_section, web_server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="N: timed runs of (a) and (b) each (default 9)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both processes (default 1)")
    parser.add_argument("--mixed-jobs", type=int, default=24, help="jobs of part (c) after warm-up (default 24)")
    parser.add_argument("--output", type=Path, help="the report (default docs/benchmarks.md, or -gpu.md with --gpu)")
    parser.add_argument("--streams", type=int, default=STREAM_CLIENTS, help="clients of part (f) (default 50)")
    parser.add_argument("--gpu", action="store_true", help="time the SD-1.5 shape on CUDA instead (see the report)")
    parser.add_argument(
        "--gpu-smoke", action="store_true",
        help="run every step of --gpu on the CPU with the tiny checkpoint (no measurement; default output var/)",
    )  # fmt: skip
    parser.add_argument(
        "--only-web", action="store_true", help="run part (e), submit latency, alone and update its section"
    )
    parser.add_argument(
        "--only-streams", action="store_true", help="run part (f), event streams, alone and update its section"
    )
    parser.add_argument(
        "--only-batching", action="store_true", help="run part (g), cross-job batching, alone and update its section"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.mixed_jobs < 1:
        parser.error("--repeats, --threads and --mixed-jobs must be at least 1")
    return args


def run_cpu(args: argparse.Namespace) -> str:
    started, clock = datetime.now(UTC), time.perf_counter()
    load_before = os.getloadavg()
    env = bench_environment(threads=args.threads, device="cpu")
    os.environ.update({**env, "LOG_LEVEL": "WARNING"})  # before Django or torch are imported
    if database_ensure(DATABASE_URL):
        log(f"created the database of {DATABASE_URL}")
    log("migrating, registering the small checkpoints")
    django_prepare()
    import torch

    from services.engine import DiffusersEngine
    from tasks.specs import engine_config

    torch.set_num_threads(args.threads)
    quiet_libraries()
    config = engine_config()
    engine = DiffusersEngine(config)
    specs, loras = model_specs(), lora_specs()
    log("starting the worker")
    with running_worker(env) as worker, web_server(env, "gthread", queue=QUEUE) as port:
        overhead = run_overhead(engine, worker, specs[MODELS[0]], args.repeats, port)
        streams = run_streams(worker, env, MODELS[0], clients=args.streams)
    log("(g) cross-job batching, 32 jobs from 8 clients")
    crossjob = run_crossjob(env, MODELS[0])
    worker_threads = worker_torch_threads(env)
    log("(c) mixed checkpoints and LoRAs")
    mixed = run_mixed(config, specs, loras, args.mixed_jobs)
    log("(d) random diffusion, batched and one by one")
    batching = run_batching(engine, specs[MODELS[0]])
    log("(e) submit latency with 32 concurrent clients, gthread and sync")
    web = run_web(env)
    context = Context(
        started=started, seconds=time.perf_counter() - clock, threads=torch.get_num_threads(),
        worker_threads=worker_threads, repeats=args.repeats, load_before=load_before, load_after=os.getloadavg(),
    )  # fmt: skip
    output = args.output or DOCS / "benchmarks.md"
    write_report(output, context, overhead, mixed, batching)
    section_splice(output, web_section(web))
    section_splice(output, streams_section(streams))
    section_splice(output, crossjob_section(crossjob))
    log(f"wrote {output}")
    lines = [final_line(overhead, mixed, batching), web_line(web), streams_line(streams), crossjob_line(crossjob)]
    return " ".join(lines)


def _prepare_one_part(args: argparse.Namespace) -> dict[str, str]:
    """The bench's environment, database and Django, for a part run on its own."""
    env = bench_environment(threads=args.threads, device="cpu")
    os.environ.update({**env, "LOG_LEVEL": "WARNING"})
    if database_ensure(DATABASE_URL):
        log(f"created the database of {DATABASE_URL}")
    django_prepare()
    return env


def run_web_only(args: argparse.Namespace) -> str:
    """Part (e) alone: its section of the report is replaced, the rest is left as it was."""
    env = _prepare_one_part(args)
    web = run_web(env)
    output = args.output or DOCS / "benchmarks.md"
    section_splice(output, web_section(web))
    log(f"wrote part (e) of {output}")
    return web_line(web)


def run_streams_only(args: argparse.Namespace) -> str:
    """Part (f) alone: its section of the report is replaced, the rest is left as it was."""
    env = _prepare_one_part(args)
    with running_worker(env) as worker:
        streams = run_streams(worker, env, MODELS[0], clients=args.streams)
    output = args.output or DOCS / "benchmarks.md"
    section_splice(output, streams_section(streams))
    log(f"wrote part (f) of {output}")
    return streams_line(streams)


def run_crossjob_only(args: argparse.Namespace) -> str:
    """Part (g) alone: its section of the report is replaced, the rest is left as it was."""
    env = _prepare_one_part(args)
    crossjob = run_crossjob(env, MODELS[0])
    output = args.output or DOCS / "benchmarks.md"
    section_splice(output, crossjob_section(crossjob))
    log(f"wrote part (g) of {output}")
    return crossjob_line(crossjob)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu or args.gpu_smoke:
        default = ROOT / "var" / "benchmarks-gpu-smoke.md" if args.gpu_smoke else DOCS / "benchmarks-gpu.md"
        line = run_gpu(args.repeats, args.output or default, smoke=args.gpu_smoke)
    else:
        parts = {"only_web": run_web_only, "only_streams": run_streams_only, "only_batching": run_crossjob_only}
        line = next((run(args) for flag, run in parts.items() if getattr(args, flag)), None) or run_cpu(args)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
