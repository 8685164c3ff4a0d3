"""The production web command (`gunicorn -c config/gunicorn.py`, as the Dockerfile, compose and Kubernetes run
it) parses and loads the app for every WEB_SERVER, and a bad setting stops it naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

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


@pytest.mark.parametrize(("variable", "value"), [("WEB_SERVER", "tornado"), ("WEB_THREADS", "0")])
def test_a_bad_web_setting_stops_it_naming_the_variable(variable: str, value: str) -> None:
    result = gunicorn("--check-config", **{variable: value})
    assert result.returncode != 0 and variable in result.stderr
