"""docker/nginx.conf, run by a real nginx in front of the two web servers compose runs behind it.

The file is used as compose mounts it, with only the addresses changed (upstreams on local ports, the media
alias on the test media folder): submits go to the gthread server, event streams to the ASGI server and
arrive while the job runs, and downloads are checked by the API and sent by nginx (X-Accel-Redirect) from
the media folder, which clients cannot reach by its internal path.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from image_model_domain.models import GenerationJob
from tests.conftest import ROOT, free_port, wait_for_job, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ROUTED_LOG = "routed"


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"{url} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def web_command(server: str, port: int, log: Path) -> subprocess.Popen:
    """The production web command, as compose runs it for `web` (gthread) and `events` (asgi)."""
    env = {
        **worker_env(),
        "WEB_SERVER": server,
        "WEB_WORKERS": "1",
        "WEB_BIND": f"127.0.0.1:{port}",
        "MEDIA_ACCEL_REDIRECT": "/protected-media/",
        "API_TRUSTED_PROXIES": "127.0.0.1",
    }
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def nginx_conf(folder: Path, *, port: int, web: int, events: int) -> Path:
    """docker/nginx.conf with local addresses, inside the main context nginx's own image provides."""
    server = (ROOT / "docker" / "nginx.conf").read_text()
    for old, new in (
        ("server web:8000;", f"server 127.0.0.1:{web};"),
        ("server events:8000;", f"server 127.0.0.1:{events};"),
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("alias /app/var/media/;", f"alias {Path(settings.MEDIA_ROOT).resolve()}/;"),
    ):
        assert old in server, old
        server = server.replace(old, new)
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx.conf"
    main.write_text(
        f"""{"user " + getpass.getuser() + ";" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{}}
http {{
    include /etc/nginx/mime.types;
{temp}
    log_format {ROUTED_LOG} '$request_method $request_uri $upstream_addr $status';
    access_log {folder / "access.log"} {ROUTED_LOG};
{server}
}}
"""
    )
    return main


@pytest.fixture(scope="module")
def proxy(django_db_setup: None, tmp_path_factory) -> Iterator[dict[str, object]]:  # noqa: ANN001
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: `make test` installs it (scripts/test_prerequisites.sh)")
    folder = tmp_path_factory.mktemp("proxy")
    ports = {"web": free_port(), "events": free_port(), "proxy": free_port()}
    servers = {
        name: web_command(server, ports[name], folder / f"{name}.log")
        for name, server in (("web", "gthread"), ("events", "asgi"))
    }
    conf = nginx_conf(folder, port=ports["proxy"], web=ports["web"], events=ports["events"])
    checked = subprocess.run([NGINX, "-t", "-c", str(conf), "-e", str(folder / "error.log")], capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode()
    with (folder / "nginx.out").open("w") as handle:
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-e", str(folder / "error.log")], stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        for name, process in servers.items():
            wait_until_up(f"http://127.0.0.1:{ports[name]}", process, folder / f"{name}.log")
        wait_until_up(f"http://127.0.0.1:{ports['proxy']}", nginx, folder / "error.log")
        yield {"url": f"http://127.0.0.1:{ports['proxy']}", "ports": ports, "access_log": folder / "access.log"}
    finally:
        for process in (nginx, *servers.values()):
            process.terminate()
        for process in (nginx, *servers.values()):
            process.wait(timeout=30)


def routed(access_log: Path, method: str, path: str) -> list[str]:
    """The upstream addresses nginx sent `method path` to ("-" when nginx answered it itself)."""
    time.sleep(0.2)  # nginx writes the line once the response is done
    lines = (line.split() for line in access_log.read_text().splitlines())
    return [upstream for verb, uri, upstream, _ in lines if (verb, uri) == (method, path)]


def headers_for(user: User) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def test_the_proxy_routes_submits_streams_and_downloads(proxy, celery_worker, dev_models) -> None:  # noqa: ANN001
    url, ports, access_log = proxy["url"], proxy["ports"], proxy["access_log"]
    alice = User.objects.create_user("alice")
    body = {"model": "tiny-sd-a", "prompt": "a lighthouse", "steps": 20, "seed": 3}

    submitted = requests.post(f"{url}/api/v1/generations/", json=body, headers=headers_for(alice), timeout=30)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"{url}/api/v1/jobs/{job_id}/"  # the client's host, through the proxy
    assert routed(access_log, "POST", "/api/v1/generations/") == [f"127.0.0.1:{ports['web']}"]

    # The stream goes to the ASGI server, and its events reach the client as they happen, not at the end.
    events_path = f"/api/v1/jobs/{job_id}/events/"
    arrived: list[tuple[str, float]] = []
    with requests.get(f"{url}{events_path}", headers=headers_for(alice), stream=True, timeout=60) as response:
        assert response.status_code == 200 and response.headers["Content-Type"] == "text/event-stream"
        for line in response.iter_lines(chunk_size=None, decode_unicode=True):
            if line.startswith("event: "):
                arrived.append((line.removeprefix("event: "), time.time()))
    assert routed(access_log, "GET", events_path) == [f"127.0.0.1:{ports['events']}"]
    names = [name for name, _ in arrived]
    assert "started" in names and names[-1] == "finished"
    job = wait_for_job(job_id, worker=celery_worker)
    assert job.status == "succeeded", job.error
    first_step = next(at for name, at in arrived if name == "progress")
    assert first_step < job.finished_at.timestamp(), "the proxy held the stream back until the job ended"

    # The download: the API checks the owner, nginx sends the file's bytes from the media folder.
    image = GenerationJob.objects.get(pk=job_id).images.get()
    file_path = f"/api/v1/images/{image.pk}/file/"
    download = requests.get(f"{url}{file_path}", headers=headers_for(alice), timeout=30)
    assert download.status_code == 200 and download.headers["Content-Type"] == "image/png"
    assert download.content == Path(image.file.path).read_bytes()
    assert "X-Accel-Redirect" not in download.headers
    assert routed(access_log, "GET", file_path) == [f"127.0.0.1:{ports['web']}"]

    # Nobody else gets it, by the API or by the internal location.
    bob = User.objects.create_user("bob")
    assert requests.get(f"{url}{file_path}", headers=headers_for(bob), timeout=30).status_code == 404
    assert requests.get(f"{url}/protected-media/{image.file.name}", timeout=30).status_code == 404
    assert requests.get(f"{url}/media/{image.file.name}", timeout=30).status_code == 404
