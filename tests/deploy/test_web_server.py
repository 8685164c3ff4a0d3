"""The production web command (`gunicorn -c config/gunicorn.py`, as the Dockerfile, compose and Kubernetes run
it) parses and loads the app for every WEB_SERVER, and a bad setting stops it naming the variable."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

WEB_COMMAND = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"]


def gunicorn(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", **env}
    return subprocess.run([*WEB_COMMAND, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def effective(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize(
    ("server", "worker_class", "app", "threads"),
    [
        ("gthread", "gthread", "config.wsgi:application", "2"),
        ("asgi", "uvicorn_worker.UvicornWorker", "config.asgi:application", "1"),
        ("sync", "sync", "config.wsgi:application", "1"),
    ],
)
def test_the_web_command_loads_the_app_with_each_server(server: str, worker_class: str, app: str, threads: str) -> None:
    assert gunicorn("--check-config", WEB_SERVER=server).returncode == 0
    config = effective(gunicorn("--print-config", WEB_SERVER=server))
    assert config["worker_class"] == worker_class and config["wsgi_app"] == app and config["threads"] == threads


def test_the_web_settings_come_from_the_environment() -> None:
    env = {"WEB_WORKERS": "3", "WEB_THREADS": "12", "WEB_BIND": "127.0.0.1:9100", "WEB_TIMEOUT_S": "30"}
    config = effective(gunicorn("--print-config", **env))
    assert config["workers"] == "3" and config["threads"] == "12" and config["timeout"] == "30"
    assert config["bind"] == "['127.0.0.1:9100']"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WEB_SERVER", "tornado"), ("WEB_THREADS", "0"), ("WEB_GIL_SWITCH_INTERVAL_MS", "0"),
     ("WEB_GIL_SWITCH_INTERVAL_MS", "fast")],
)  # fmt: skip
def test_a_bad_web_setting_stops_it_naming_the_variable(variable: str, value: str) -> None:
    result = gunicorn("--check-config", **{variable: value})
    assert result.returncode != 0 and variable in result.stderr


def switch_interval_of_a_worker(**env: str) -> str:
    """Start the web command on a free port with an app that answers its worker's GIL switch interval."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1", **env,
    }  # fmt: skip
    process = subprocess.Popen(
        [*WEB_COMMAND, "tests.deploy.switch_interval_app:app"], cwd=ROOT, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                return connection.getresponse().read().decode()
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_web_workers_hand_the_gil_over_every_millisecond_unless_told_otherwise() -> None:
    assert float(switch_interval_of_a_worker()) == pytest.approx(0.001)
    assert float(switch_interval_of_a_worker(WEB_GIL_SWITCH_INTERVAL_MS="2.5")) == pytest.approx(0.0025)
