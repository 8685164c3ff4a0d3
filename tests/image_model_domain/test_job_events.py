"""Live job events: a real worker publishes to Redis, clients read them as Server-Sent Events.

The ASGI path runs under the production web command (gunicorn with a uvicorn worker) in a subprocess on the
test database; the WSGI paths (redis-py, and polling the row without Redis) run in-process.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from image_model_domain.events import events_forget, queue_position
from image_model_domain.jobs import job_cancel, job_create_generation, job_delete
from image_model_domain.models import GenerationJob
from tests.conftest import ROOT, free_port, session_queue, wait_for_job, worker_env
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def asgi_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The production web command with WEB_SERVER=asgi (gunicorn with a uvicorn worker), on the test database."""
    env = {**worker_env(), "WEB_SERVER": "asgi", "WEB_WORKERS": "1", "WEB_BIND": f"127.0.0.1:{port}"}
    return [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py"], env


@contextmanager
def asgi_running(tmp_path_factory, **env: str) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    log = tmp_path_factory.mktemp("asgi") / "server.log"
    command, base_env = asgi_command(port)
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env={**base_env, **env}, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"the ASGI server did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def asgi_server(django_db_setup: None, tmp_path_factory) -> Iterator[str]:  # noqa: ANN001
    with asgi_running(tmp_path_factory) as url:
        yield url


def token_for(user: User) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def parse(lines: Iterator[str], stop: Any = None) -> list[dict[str, Any]]:
    """SSE lines -> [{id?, event, data}], up to the end of the stream or the first event that `stop` accepts."""
    events, event = [], {}
    for line in lines:
        if line == "":
            if "event" in event:
                events.append(event)
                if stop is not None and stop(event):
                    break
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[field] = json.loads(value) if field == "data" else value
    return events


def stream(base: str, job: GenerationJob, headers: dict[str, str], stop: Any = None) -> list[dict[str, Any]]:
    with requests.get(
        f"{base}/api/v1/jobs/{job.pk}/events/",
        headers={"Accept": "text/event-stream", **headers},
        stream=True,
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream"
        return parse(response.iter_lines(chunk_size=None, decode_unicode=True), stop)


def wsgi_stream(client: Client, job: GenerationJob, **headers: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/jobs/{job.pk}/events/", HTTP_ACCEPT="text/event-stream", **headers)
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    body = b"".join(response.streaming_content).decode()
    return parse(iter(body.split("\n")))


def generate(owner: User | None, **kwargs: Any) -> GenerationJob:
    params = {"owner": owner, "model_name": "tiny-sd-a", "prompt": "a red fox", "steps": 8, "seed": 7} | kwargs
    return job_create_generation(**params)


def check_complete_run(events: list[dict[str, Any]], job: GenerationJob, base: str) -> None:
    """queued..., started, progress 1..N in order, one image event per stored image, then `finished` last."""
    names = [event["event"] for event in events]
    assert names[-1] == "finished" and events[-1]["data"] == {"status": "succeeded", "error": ""}
    assert "started" in names and set(names[: names.index("started")]) <= {"queued"}
    steps = [event["data"]["step"] for event in events if event["event"] == "progress"]
    assert steps == list(range(1, job.progress_total + 1))
    assert all(event["data"]["total"] == job.progress_total for event in events if event["event"] == "progress")
    images = [event["data"] for event in events if event["event"] == "image"]
    assert [(image["id"], image["index"], image["seed"]) for image in images] == [
        (str(image.pk), image.index, image.seed) for image in job.images.order_by("index")
    ]
    assert all(image["url"] == f"{base}/api/v1/images/{image['id']}/file/" for image in images)
    assert "preview" not in names  # only for jobs submitted with preview: true
    ids = [event["id"] for event in events]
    assert ids == sorted(ids, key=lambda value: tuple(map(int, value.split("-")))) and len(set(ids)) == len(ids)


def test_a_client_gets_every_step_in_order_then_the_image_and_the_final_event(
    asgi_server: str, celery_worker, dev_models
) -> None:  # noqa: ANN001
    owner = User.objects.create_user("owner")
    headers = token_for(owner)
    job = generate(owner)
    events = stream(asgi_server, job, headers)  # connected while the job runs (or even before it starts)

    job = wait_for_job(job.pk, worker=celery_worker)
    check_complete_run(events, job, asgi_server)
    image = events[-2]["data"]
    file = requests.get(image["url"], headers=headers, timeout=10)
    assert file.status_code == 200 and Image.open(io.BytesIO(file.content)).size == (64, 64)


def test_clients_of_one_job_share_its_feed_and_each_gets_every_event(
    asgi_server: str, celery_worker, dev_models
) -> None:  # noqa: ANN001
    """Five simultaneous streams of one job (one Redis read per event in the web process, fanned out to all)."""
    from concurrent.futures import ThreadPoolExecutor

    owner = User.objects.create_user("owner")
    headers = token_for(owner)
    job = generate(owner, steps=6)
    with ThreadPoolExecutor(5) as pool:
        runs = list(pool.map(lambda _: stream(asgi_server, job, headers), range(5)))

    job = wait_for_job(job.pk, worker=celery_worker)
    for events in runs:
        check_complete_run(events, job, asgi_server)
    assert all(events == runs[0] for events in runs)


def test_the_wsgi_fallback_reads_the_same_events_from_redis(celery_worker, dev_models) -> None:  # noqa: ANN001
    owner = User.objects.create_user("owner")
    client = Client()
    client.force_login(owner)
    job = generate(owner, steps=5)
    events = wsgi_stream(client, job)

    check_complete_run(events, wait_for_job(job.pk), "http://testserver")


def test_a_reconnect_with_last_event_id_misses_nothing_and_one_after_the_end_gets_204(
    asgi_server: str, celery_worker, dev_models
) -> None:  # noqa: ANN001
    owner = User.objects.create_user("owner")
    headers = token_for(owner)
    job = generate(owner, steps=10)
    first = stream(
        asgi_server, job, headers, stop=lambda event: event["event"] == "progress" and event["data"]["step"] == 4
    )
    assert first[-1]["data"]["step"] == 4
    rest = stream(asgi_server, job, {**headers, "Last-Event-ID": first[-1]["id"]})
    job = wait_for_job(job.pk, worker=celery_worker)

    whole = stream(asgi_server, job, headers)
    assert first + rest == whole
    check_complete_run(whole, job, asgi_server)
    resumed = requests.get(
        f"{asgi_server}/api/v1/jobs/{job.pk}/events/?last_event_id={whole[5]['id']}", headers=headers, timeout=30
    )
    assert parse(iter(resumed.text.split("\n"))) == whole[6:]
    after_end = requests.get(
        f"{asgi_server}/api/v1/jobs/{job.pk}/events/", headers={**headers, "Last-Event-ID": whole[-1]["id"]}, timeout=10
    )
    assert after_end.status_code == 204  # an EventSource stops reconnecting


def test_only_the_owner_and_staff_see_a_jobs_events(asgi_server: str, dev_models) -> None:  # noqa: ANN001
    owner = User.objects.create_user("owner")
    job = generate(owner)
    error = "No such file: /srv/models/secret/unet.safetensors"
    GenerationJob.objects.filter(pk=job.pk).update(status="cancelled", error=error)
    url = f"{asgi_server}/api/v1/jobs/{job.pk}/events/"
    accept = {"Accept": "text/event-stream"}

    for headers in ({}, token_for(User.objects.create_user("someone-else"))):
        refused = requests.get(url, headers={**accept, **headers}, timeout=10)
        assert refused.status_code == 404, refused.text
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json() == {"detail": "No GenerationJob matches the given query."}
    # As in the job's JSON: the owner sees the error without server paths, staff see it whole.
    for headers, seen in (
        (token_for(owner), "No such file: <server path>"),
        (token_for(User.objects.create_user("staff", is_staff=True)), error),
    ):
        events = stream(asgi_server, job, headers)
        assert events[-1]["event"] == "cancelled" and events[-1]["data"]["error"] == seen
    unknown = requests.get(url, headers={**accept, "Authorization": "Bearer not-a-token"}, timeout=10)
    assert unknown.status_code == 401 and unknown.headers["Content-Type"] == "application/json"
    bad = requests.get(
        url, headers={**token_for(User.objects.create_user("x")), "Last-Event-ID": "yesterday"}, timeout=10
    )
    assert bad.status_code == 404  # ownership first: no hint that the job exists
    bad = requests.get(url, headers={**token_for(owner), "Last-Event-ID": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"] == {"Last-Event-ID": ["An event id, like 1795438516944-0."]}


def test_under_asgi_a_stream_that_redis_lost_is_served_from_the_row(asgi_server: str, settings, dev_models) -> None:  # noqa: ANN001
    settings.DIFFUSION_MODEL_QUEUES = {
        "tiny-sd-a": session_queue("nobody-listens")
    }  # both stay as the test leaves them
    waiting, done = generate(None), generate(None)
    GenerationJob.objects.filter(pk=done.pk).update(status="succeeded", attempts=1, progress_step=8, progress_total=8)
    for job in (waiting, done):
        events_forget(job.pk)  # Redis restarted empty

    first = stream(asgi_server, waiting, {}, stop=lambda event: True)
    assert [(event["event"], event["data"]) for event in first] == [("queued", {"position": queue_position(waiting)})]
    assert [(event["event"], event["data"]) for event in stream(asgi_server, done, {})] == [
        ("started", {"attempt": 1, "total": 8}),
        ("progress", {"step": 8, "total": 8}),
        ("finished", {"status": "succeeded", "error": ""}),
    ]
    job_cancel(job=GenerationJob.objects.get(pk=waiting.pk))


def test_under_asgi_streams_do_not_open_a_database_connection_each(settings, dev_models, tmp_path_factory) -> None:  # noqa: ANN001
    # Each request runs on a new thread under ASGI: a read of the job there would start a PostgreSQL backend per
    # stream. The job is read on the web process's lookup thread, whose connection stays. This server reaches
    # PostgreSQL through a proxy that counts its connections (the server's alone: workers' come and go).
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}  # no worker connects either
    database = settings.DATABASES["default"]
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    url = f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}"
    owner = User.objects.create_user("owner")
    anonymous, owned, token = generate(None), generate(owner), token_for(owner)  # the token: read from the database
    GenerationJob.objects.filter(pk__in=[anonymous.pk, owned.pk]).update(status="cancelled", error="Cancelled.")
    browser = Client()
    browser.force_login(owner)  # an EventSource on the site: the session cookie, its row read from the database
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    try:
        with asgi_running(tmp_path_factory, DATABASE_URL=url) as asgi_server:
            stream(asgi_server, anonymous, {})  # the lookup thread's connection, if it had none yet
            before = proxy.accepted
            for _ in range(2):
                assert stream(asgi_server, anonymous, {})[-1]["event"] == "cancelled"
                assert stream(asgi_server, owned, token)[-1]["event"] == "cancelled"
                assert stream(asgi_server, owned, cookie)[-1]["event"] == "cancelled"
            assert proxy.accepted - before == 0  # 6 with a connection per stream
            assert requests.get(f"{asgi_server}/api/v1/jobs/{owned.pk}/events/", timeout=10).status_code == 404
    finally:
        proxy.close()


def test_preview_events_carry_decodable_images_of_each_image_in_the_batch(
    asgi_server: str, celery_worker, dev_models
) -> None:  # noqa: ANN001
    owner = User.objects.create_user("owner")
    job = generate(owner, steps=4, num_images=2, preview=True)  # PREVIEW_EVERY_STEPS=2 in the test settings
    events = stream(asgi_server, job, token_for(owner))

    previews = [event["data"] for event in events if event["event"] == "preview"]
    assert [preview["step"] for preview in previews] == [4, 8]  # after denoising steps 2 and 4 of both images
    for preview in previews:
        assert [image["index"] for image in preview["images"]] == [0, 1]
        for image in preview["images"]:
            assert image["data"].startswith("data:image/jpeg;base64,")
            decoded = Image.open(io.BytesIO(base64.b64decode(image["data"].split(",", 1)[1])))
            assert decoded.format == "JPEG" and decoded.size == (64, 64)
    names = [event["event"] for event in events]
    assert names.index("preview") > names.index("started") and names[-1] == "finished"


def test_positions_follow_the_queue_and_deleting_a_waiting_job_ends_its_stream(settings, dev_models) -> None:  # noqa: ANN001
    settings.DIFFUSION_MODEL_QUEUES = {"tiny-sd-a": session_queue("nobody-listens")}  # both jobs stay queued
    first, second = generate(None), generate(None)
    response = Client().get(f"/api/v1/jobs/{second.pk}/events/")  # opened now, read below
    job_cancel(job=first)
    job_delete(job=second)

    events = parse(iter(b"".join(response.streaming_content).decode().split("\n")))
    assert [(event["event"], event["data"]) for event in events] == [
        ("queued", {"position": 2}),
        ("queued", {"position": 1}),  # the job ahead was cancelled
        ("cancelled", {"status": "cancelled", "error": "Deleted."}),
    ]
    assert Client().get(f"/api/v1/jobs/{second.pk}/events/").status_code == 404


def test_while_redis_is_unreachable_the_stream_is_served_from_the_row(settings, dev_models) -> None:  # noqa: ANN001
    job = generate(None)
    GenerationJob.objects.filter(pk=job.pk).update(status="failed", progress_step=3, error="Out of memory.")
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    response = Client().get(f"/api/v1/jobs/{job.pk}/events/")
    events = parse(iter(b"".join(response.streaming_content).decode().split("\n")))
    assert [(event["event"], event["data"]) for event in events[1:]] == [
        ("progress", {"step": 3, "total": 8}),
        ("failed", {"status": "failed", "error": "Out of memory."}),
    ]


def test_without_redis_the_stream_polls_the_job_row(settings, celery_worker, dev_models) -> None:  # noqa: ANN001
    settings.REDIS_URL = None  # the embedded default's web tier; the worker still has its Redis broker
    job = generate(None, steps=6)
    events = wsgi_stream(Client(), job)

    job = wait_for_job(job.pk)
    names = [event["event"] for event in events]
    assert names[-2:] == ["image", "finished"] and all("id" not in event for event in events)
    steps = [event["data"]["step"] for event in events if event["event"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == job.progress_total
    assert events[-2]["data"]["id"] == str(job.images.get().pk)


def test_under_asgi_without_redis_row_events_arrive_while_the_job_waits(settings, dev_models, tmp_path) -> None:  # noqa: ANN001
    # Django reads a sync iterator to its end before sending under ASGI: the row fallback must be async there.
    settings.DIFFUSION_DEFAULT_QUEUE = session_queue("nobody-serves")  # the job stays queued
    job = generate(None)
    port = free_port()
    command, env = asgi_command(port)
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with (tmp_path / "server.log").open("w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/jobs/{job.pk}/events/"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(url, headers={"Accept": "text/event-stream"}, stream=True, timeout=(5, 20))
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        with response:
            assert response.status_code == 200
            lines = response.iter_lines(chunk_size=None, decode_unicode=True)
            first = parse(lines, stop=lambda event: True)  # the first event, read while the job still waits
            assert first and first[0]["event"] == "queued"
            assert GenerationJob.objects.get(pk=job.pk).status == "queued"
            job_cancel(job=GenerationJob.objects.get(pk=job.pk))
            rest = parse(lines)
        assert rest[-1]["event"] == "cancelled"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_stalled_lookup_is_a_503_and_does_not_hold_up_the_others() -> None:
    import threading

    from common.api.errors import ServiceUnavailable
    from image_model_domain.api.views.events import _on_lookup_thread

    release = threading.Event()
    with pytest.raises(ServiceUnavailable, match="did not answer in time"):
        _on_lookup_thread(release.wait, 30, timeout_s=0.2)  # a read that hangs, as on a stalled database
    # Another stream's lookup still runs (on another lookup thread) while the first one hangs.
    started = time.monotonic()
    assert _on_lookup_thread(lambda: GenerationJob.objects.count(), timeout_s=5) == 0
    assert time.monotonic() - started < 5
    release.set()
