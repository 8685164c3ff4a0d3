"""`make test` on a fresh machine installs Debian's chromium for the browser tests (as .ci/run did)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "test_prerequisites.sh"


def fake_tools(bin_dir: Path, log: Path, chromium: Path) -> None:
    """pg_isready and redis-cli answer "up"; apt-get records its arguments and "installs" chromium (and nginx)."""
    tools = {
        "pg_isready": "exit 0",
        "redis-cli": "exit 0",
        "apt-get": f'echo "apt-get $*" >> {log}\n'
        f'if [ "$1" = install ] || [ "$4" = chromium ]; then touch {chromium}; chmod +x {chromium}; fi\n'
        f'case "$*" in *nginx*) printf "#!/bin/sh\\n" > {bin_dir}/nginx; chmod +x {bin_dir}/nginx;; esac',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)


def run_script(tmp_path: Path, chromium: Path) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    fake_tools(bin_dir, log, chromium)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMIUM": str(chromium)}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return result, log.read_text() if log.exists() else ""


def test_make_test_runs_the_prerequisites_and_ci_only_calls_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "bash scripts/test_prerequisites.sh" in test_recipe.splitlines()[1]  # before ruff and pytest
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_a_missing_chromium_is_installed_with_apt_get(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the script installs as root (or through sudo)")
    chromium = tmp_path / "chromium"
    result, log = run_script(tmp_path, chromium)
    assert result.returncode == 0, result.stderr
    assert "apt-get update" in log and "install -y -qq chromium" in log
    assert os.access(chromium, os.X_OK)

    result, log_again = run_script(tmp_path, chromium)  # present now: nothing to do
    assert result.returncode == 0 and log_again == log
