"""GET /api/v1/jobs/{id}/events/: a job's events as Server-Sent Events (text/event-stream).

The view itself is an ordinary DRF view (authentication, owner-only lookup, one database read); the
stream it returns is read from the job's Redis Stream (image_model_domain/events.py):

- under ASGI (WEB_SERVER=asgi: uvicorn workers under gunicorn), an async iterator on redis.asyncio: an open
  stream is a coroutine, not a thread, and each web process reads a job's stream once for all its clients;
- under WSGI, a sync iterator on redis-py (each open stream holds a worker thread);
- without Redis (the embedded default of `make run`), or while it is down, a sync iterator that polls the
  job row every JOB_PROGRESS_INTERVAL_S: no event ids, and steps between two polls are not sent.

A stream ends after the job's final event, or after JOB_EVENTS_MAX_S (the client reconnects with
Last-Event-ID and misses nothing); a reconnect after the final event is answered 204, which tells an
EventSource to stop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, ClassVar, TypeVar

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connection
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.errors import ServiceUnavailable, error_responses
from image_model_domain.api.views.visibility import visible_to
from image_model_domain.events import Event, events_enabled, events_from_row, events_key, final_event
from image_model_domain.models import ACTIVE_STATUSES, GenerationJob
from image_model_domain.sources import error_for_owner

KEEPALIVE_S = 15  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 3000  # how long an EventSource waits before it reconnects
READ_COUNT = 500
EVENT_ID = re.compile(r"\d{1,19}(?:-\d{1,19})?")  # a Redis stream id (64-bit parts); "0" or bare ms too
LOST = b": the event store is unavailable; reconnect\n\n"
T = TypeVar("T")

EXAMPLE = (
    "retry: 3000\n\n"
    'id: 1795438516944-0\nevent: queued\ndata: {"position": 1}\n\n'
    'id: 1795438517012-0\nevent: started\ndata: {"attempt": 1, "total": 25}\n\n'
    'id: 1795438517101-0\nevent: progress\ndata: {"step": 1, "total": 25}\n\n'
    "…\n\n"
    'id: 1795438521877-0\nevent: image\ndata: {"id": "6f1c3c52-1a8e-4b5f-9d7e-2f4c0f0a9b11", "index": 0, '
    '"seed": 1234, "url": "https://diffusion.example.com/api/v1/images/6f1c3c52-1a8e-4b5f-9d7e-2f4c0f0a9b11/file/"}\n\n'
    'id: 1795438521903-0\nevent: finished\ndata: {"status": "succeeded", "error": ""}\n\n'
)
DESCRIPTION = """Server-Sent Events of one job, from the start (or after `Last-Event-ID`) to its final event.

Events: `queued` {position} (again whenever the position changes), `started` {attempt, total}, `progress`
{step, total} after every denoising step, `preview` {step, total, images: [{index, data}]} (a small
JPEG as a data: URL, for jobs submitted with `preview: true`), `image` {id, index, seed, url} as each image
is stored, and one final event, `finished`, `failed` or `cancelled` {status, error}, after which the
stream ends. Each event has an `id`: reconnect with the `Last-Event-ID` header (an EventSource does this by
itself) or `?last_event_id=` to resume without a gap. Streams last at most JOB_EVENTS_MAX_S. Without Redis
(the embedded default) the job row is polled instead: events have no id and steps can be skipped.

    curl -N -H 'Authorization: Token <key>' http://127.0.0.1:8000/api/v1/jobs/<id>/events/
"""


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for text/event-stream; the stream itself is a StreamingHttpResponse."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode()


def _frame(event: Event, base: str, redact: bool = False) -> bytes:
    if event.name == "image":
        data = json.dumps({**event.data, "url": base + event.data["url"]})
    elif event.final and redact:  # non-staff owners see errors without server paths, as in the job's JSON
        final = json.loads(event.raw) if event.raw else dict(event.data)
        data = json.dumps({**final, "error": error_for_owner(final.get("error", ""))})
    else:
        data = event.raw or json.dumps(event.data)  # as stored: each event is encoded once, not once per client
    head = f"id: {event.id}\n" if event.id else ""
    return f"{head}event: {event.name}\ndata: {data}\n\n".encode()


def _entries(reply: Any) -> list[Event]:
    """XREAD's reply (RESP2 list or RESP3 dict) as events."""
    streams = reply.items() if isinstance(reply, dict) else (reply or [])
    events = []
    for _, entries in streams:
        for entry_id, fields in entries:
            name, raw = fields[b"event"].decode(), fields[b"data"].decode()
            data = json.loads(raw) if name == "image" else {}  # only image events are rewritten (their URL)
            events.append(Event(name, data, entry_id.decode(), raw))
    return events


class _Stream:
    """What one client is sent: the state machine shared by the sync and the async reader."""

    def __init__(
        self, job: GenerationJob, cursor: str | None, base: str, redact: bool, row_events: list[Event]
    ) -> None:
        self.redact = redact
        self.key = events_key(job.pk)
        self.cursor = cursor or "0-0"
        self.fresh = cursor is None
        self.row_events = row_events  # for a fresh client when the stream held nothing at connect; else []
        self.final_at_connect = None if job.status in ACTIVE_STATUSES else Event(*final_event(job.status, job.error))
        self.base = base
        self.deadline = time.monotonic() + settings.JOB_EVENTS_MAX_S
        self.done = False

    def first(self, events: list[Event]) -> list[bytes]:
        """Frames for what the stream already holds; the row fills in where the stream has nothing."""
        if not events and self.fresh:
            events = self.row_events
        frames = self.more(events)
        if not self.done and self.final_at_connect:
            frames += self.more([self.final_at_connect])  # the stream lost its final event (Redis restarted)
        return [f"retry: {RETRY_MS}\n\n".encode(), *frames]

    def more(self, events: list[Event]) -> list[bytes]:
        frames = []
        for event in events:
            frames.append(_frame(event, self.base, self.redact))
            if event.id:
                self.cursor = event.id
            if event.final:
                self.done = True
                break
        return frames

    def block_ms(self) -> int:
        """How long the next read may wait; 0 when the stream's time is up."""
        remaining = self.deadline - time.monotonic()
        return 0 if remaining <= 0 else max(1, int(min(KEEPALIVE_S, remaining) * 1000))


# Clients are made once per process (and per event loop for redis.asyncio), keyed by URL, and shared by every
# stream: a client per stream cost a connect, and redis-py reads its own package metadata for each new client.
_sync_clients: dict[tuple[str, int], Any] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()


def _sync_client(socket_timeout: int) -> Any:
    """The process's redis-py client (its pool is thread-safe); reads that block need a longer socket timeout."""

    index = (settings.REDIS_URL, socket_timeout)
    client = _sync_clients.get(index)
    if client is None:
        client = _sync_clients[index] = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=socket_timeout, socket_connect_timeout=2
        )
    return client


def _async_client() -> Any:
    """The event loop's redis.asyncio client: the feeds' blocking reads and the streams' history reads."""

    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(settings.REDIS_URL)
    if client is None:
        client = clients[settings.REDIS_URL] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_timeout=KEEPALIVE_S + 10, socket_connect_timeout=2
        )
    return client


def _read_redis_sync(stream: _Stream) -> Iterator[bytes]:

    client = _sync_client(KEEPALIVE_S + 10)
    try:
        yield from stream.first(_read_all_sync(client, stream))
        while not stream.done and (block := stream.block_ms()):
            events = _entries(client.xread({stream.key: stream.cursor}, count=READ_COUNT, block=block))
            yield from stream.more(events) if events else [b": keep-alive\n\n"]
    except redis.RedisError:
        yield LOST  # the client reconnects with its Last-Event-ID and is served from the row if Redis stays away


def _read_all_sync(client: Any, stream: _Stream) -> list[Event]:
    events, cursor = [], stream.cursor
    while batch := _entries(client.xread({stream.key: cursor}, count=READ_COUNT)):
        events += batch
        cursor = batch[-1].id
        if len(batch) < READ_COUNT:
            break
    return events


def _newer(entry_id: str, cursor: str) -> bool:
    return tuple(map(int, entry_id.split("-"))) > tuple(map(int, cursor.split("-")))


class _Feed:
    """One XREAD BLOCK per job per web process (per event loop), fanned out to every open stream of the job.

    50 clients of one job cost one Redis read per event instead of 50. A stream joins the feed first and
    reads the history after, so nothing falls between the two: the feed starts after the stream's last
    entry at its start, and each stream drops what its own history already held.
    """

    feeds: ClassVar[dict[tuple[int, str], _Feed]] = {}

    def __init__(self, key: str) -> None:
        self.key = key
        self.queues: set[asyncio.Queue] = set()
        self.ready = asyncio.Event()
        self.failure: Exception | None = None
        self.task = asyncio.get_running_loop().create_task(self.run())

    @classmethod
    def join(cls, key: str) -> tuple[_Feed, asyncio.Queue]:
        index = (id(asyncio.get_running_loop()), key)
        feed = cls.feeds.get(index)
        if feed is None or feed.task.done():
            feed = cls.feeds[index] = cls(key)
        queue: asyncio.Queue = asyncio.Queue()
        feed.queues.add(queue)
        return feed, queue

    def leave(self, queue: asyncio.Queue) -> None:
        self.queues.discard(queue)
        if not self.queues:
            self.task.cancel()
            index = (id(asyncio.get_running_loop()), self.key)
            if self.feeds.get(index) is self:  # not a newer feed that replaced this one after it failed
                del self.feeds[index]

    async def run(self) -> None:

        client = _async_client()
        try:
            last = await client.xrevrange(self.key, count=1)
            cursor = last[0][0].decode() if last else "0-0"
            self.ready.set()
            while self.queues:
                events = _entries(await client.xread({self.key: cursor}, count=READ_COUNT, block=KEEPALIVE_S * 1000))
                if events:
                    cursor = events[-1].id
                for queue in list(self.queues):
                    queue.put_nowait(events)
        except Exception as error:  # a Redis error, or anything else: no stream may wait on a dead feed
            self.failure = error if isinstance(error, redis.RedisError) else redis.RedisError(str(error))
            for queue in list(self.queues):
                queue.put_nowait(self.failure)
        finally:
            self.ready.set()


async def _read_redis_async(stream: _Stream) -> AsyncIterator[bytes]:

    feed, queue = _Feed.join(stream.key)
    try:
        await feed.ready.wait()
        if feed.failure is not None:
            raise feed.failure
        client = _async_client()
        events, cursor = [], stream.cursor
        while batch := _entries(await client.xread({stream.key: cursor}, count=READ_COUNT)):
            events += batch
            cursor = batch[-1].id
            if len(batch) < READ_COUNT:
                break
        for frame in stream.first(events):
            yield frame
        while not stream.done and (block := stream.block_ms()):
            try:
                async with asyncio.timeout(block / 1000):  # no task per event, as wait_for makes
                    item = await queue.get()
            except TimeoutError:
                item = []
            if isinstance(item, Exception):
                raise item
            events = [event for event in item if _newer(event.id, stream.cursor)]
            for frame in stream.more(events) if events else [b": keep-alive\n\n"]:
                yield frame
    except redis.RedisError:
        yield LOST
    finally:
        feed.leave(queue)


def _row_frames(job_id: Any, sent: dict[str, Any], base: str, redact: bool) -> tuple[list[bytes], bool]:
    """Frames for what changed in the job row since `sent` (updated in place), and whether it is final."""
    job = GenerationJob.objects.filter(pk=job_id).first()
    events = events_from_row(job) if job else [Event("cancelled", {"status": "cancelled", "error": "Deleted."})]
    frames = []
    for event in events:
        key = f"{event.name}:{event.data['id']}" if event.name == "image" else event.name
        if sent.get(key) != event.data:
            sent[key] = event.data
            frames.append(_frame(event, base, redact))
        if event.final:
            return frames, True
    return frames, False


def _poll_row(job_id: Any, base: str, redact: bool) -> Iterator[bytes]:
    """No Redis: send what changed in the job row every JOB_PROGRESS_INTERVAL_S."""
    sent: dict[str, Any] = {}
    deadline = time.monotonic() + settings.JOB_EVENTS_MAX_S
    yield f"retry: {RETRY_MS}\n\n".encode()
    while time.monotonic() < deadline:
        frames, done = _row_frames(job_id, sent, base, redact)
        yield from frames
        if done:
            return
        time.sleep(max(settings.JOB_PROGRESS_INTERVAL_S, 0.1))


async def _poll_row_async(job_id: Any, base: str, redact: bool) -> AsyncIterator[bytes]:
    """_poll_row under ASGI: Django would read a sync iterator to its end before sending anything."""

    read = sync_to_async(_row_frames)
    sent: dict[str, Any] = {}
    deadline = time.monotonic() + settings.JOB_EVENTS_MAX_S
    yield f"retry: {RETRY_MS}\n\n".encode()
    while time.monotonic() < deadline:
        frames, done = await read(job_id, sent, base, redact)
        if frames:
            yield b"".join(frames)
        if done:
            return
        await asyncio.sleep(max(settings.JOB_PROGRESS_INTERVAL_S, 0.1))


def _job_lookup(jobs: QuerySet, with_row_events: bool) -> tuple[GenerationJob | None, list[Event]]:
    """The job (None when the client may not see it) and, if asked, what its row says as events."""
    job = jobs.first()
    return job, events_from_row(job) if job is not None and with_row_events else []


LOOKUP_THREADS = 4  # each keeps its own database connection
LOOKUP_TIMEOUT_S = 10.0
# Threads start on first use; under WSGI none ever does.
_lookup_threads = ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="job-events-lookup")


def _on_lookup_thread(function: Callable[..., T], *args: Any, timeout_s: float = LOOKUP_TIMEOUT_S) -> T:
    """Run a database read on one of the process's lookup threads, which keep their connections between streams.

    Under ASGI Django runs each request's sync code on a thread of its own, so a read there opens a new
    database connection every time: a PostgreSQL backend started and stopped for each stream that connects
    (about 4 ms of CPU on the database server, more than the rest of the stream's set-up). A lookup thread's
    connection lives like a WSGI thread's, for CONN_MAX_AGE. The client's token or session is read there too.
    A read that does not answer within `timeout_s` (a stalled database) is a 503, and the other threads go on
    serving other streams meanwhile.
    """

    def run() -> T:
        close_old_connections()  # what a request's start does: drop a connection past its age or broken
        try:
            return function(*args)
        finally:
            close_old_connections()

    future = _lookup_threads.submit(contextvars.copy_context().run, run)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise ServiceUnavailable("The database did not answer in time; try again shortly.") from None


def _redis_state(job_id: Any, cursor: str | None) -> tuple[bool, bool]:
    """(Redis answers, the job's stream holds events after `cursor`), in one round trip at connect."""

    try:
        after = _sync_client(2).xrange(events_key(job_id), min=f"({cursor}" if cursor else "-", count=1)
        return True, bool(after)
    except redis.RedisError:
        return False, False


class JobEventsView(APIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        summary="A job's live events (Server-Sent Events)",
        description=DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Resume after this event id (sent by an EventSource when it reconnects).",
                pattern=rf"^{EVENT_ID.pattern}$",
            ),
            OpenApiParameter(
                "last_event_id",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="The same, as a parameter.",
                pattern=rf"^{EVENT_ID.pattern}$",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                # One Server-Sent Event, as an EventSource hands it over: its id, its name and its JSON data.
                {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "event": {"type": "string"},
                        "data": {"type": "string", "description": "JSON."},
                    },
                },
                description="The event stream; it ends after the final event or JOB_EVENTS_MAX_S.",
                examples=[OpenApiExample("A job's events", value=EXAMPLE, status_codes=[200])],
            ),
            (204, "text/event-stream"): OpenApiResponse(
                description="The job has finished and its final event was already sent: nothing more will come."
            ),
            **{(code, "application/json"): response for code, response in error_responses(400, 401, 404, 503).items()},
        },
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        given = {"Last-Event-ID": request.headers.get("Last-Event-ID"), "last_event_id": None}
        given["last_event_id"] = request.query_params.get("last_event_id")
        # present, even empty, must be an id; told after the 404 of a job the client may not see
        invalid = next(
            (field for field, value in given.items() if value is not None and not EVENT_ID.fullmatch(value)), None
        )
        cursor = None if invalid else given["Last-Event-ID"] or given["last_event_id"] or None
        reachable, has_more = _redis_state(pk, cursor) if events_enabled() and not invalid else (False, False)
        asgi = isinstance(request._request, ASGIRequest)
        jobs = visible_to(request, GenerationJob.objects.all()).filter(pk=pk)
        # The row fills in for the stream only where the stream holds nothing yet (then a queued job's position
        # is counted); otherwise one read of the row.
        with_row_events = reachable and cursor is None and not has_more
        if asgi and not connection.in_atomic_block:
            job, row_events = _on_lookup_thread(_job_lookup, jobs, with_row_events)
        else:
            job, row_events = _job_lookup(jobs, with_row_events)
        if job is None:
            raise Http404("No GenerationJob matches the given query.")
        if invalid:
            return Response(
                {"detail": "Invalid input.", "errors": {invalid: ["An event id, like 1795438516944-0."]}}, status=400
            )
        base = request.build_absolute_uri("/")[:-1]
        redact = not request.user.is_staff
        if not reachable:  # no Redis (the embedded default), or it is down: what the row says, polled
            content: Any = _poll_row_async(job.pk, base, redact) if asgi else _poll_row(job.pk, base, redact)
        else:
            if cursor and job.status not in ACTIVE_STATUSES and not has_more:
                return HttpResponse(status=204)
            stream = _Stream(job, cursor, base, redact, row_events)
            content = _read_redis_async(stream) if asgi else _read_redis_sync(stream)
            if not connection.in_atomic_block:
                connection.close()  # the stream needs no database: give the connection back now, not at its end
        response = StreamingHttpResponse(content, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
        return response

    def perform_authentication(self, request: Request) -> None:
        """The token's or the session's user, read on the lookup thread under ASGI (see _on_lookup_thread)."""
        if isinstance(request._request, ASGIRequest) and not connection.in_atomic_block:
            _on_lookup_thread(lambda: request.user)
        else:
            super().perform_authentication(request)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response):  # errors are JSON, whatever the client accepts
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
