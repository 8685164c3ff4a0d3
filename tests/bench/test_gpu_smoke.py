"""`python -m bench.run --gpu-smoke`: every step of the GPU benchmark (each acceleration, then the service end to
end through the web command and a worker on the embedded default) runs on the CPU with the tiny checkpoint, so
the command a GPU session runs first is known to work before a GPU is lent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_gpu_benchmark_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    report = tmp_path / "gpu.md"
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--gpu-smoke", "--repeats", "1", "--output", str(report)],
        cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "CPU (--gpu-smoke: not a measurement)" in text
    for label in ("plain (SDPA)", "+ channels_last", "+ fused q/k/v"):
        assert len(re.findall(rf"^\| {re.escape(label)} \| [12] \| [0-9.]+ \| [0-9.]+ \|$", text, re.M)) == 2, text
    rows = re.findall(r"^\| ([12]) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| within 3%", text, re.M)
    assert [batch for batch, *_ in rows] == ["1", "2"], text
    for _, bare, service, ratio in rows:
        assert float(bare) > 0 and float(service) > 0
        assert abs(float(ratio) - float(service) / float(bare)) < 0.01
    assert "service_over_bare_b1=" in result.stdout
