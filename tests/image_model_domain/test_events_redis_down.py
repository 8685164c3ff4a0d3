"""Publishing job events while Redis is down: one failed attempt, then none until CACHE_RETRY_AFTER_S."""

from __future__ import annotations

import socket
import threading

import pytest

from image_model_domain import events


@pytest.fixture
def refusing_redis():  # noqa: ANN201
    """A port that accepts and at once closes every connection (a Redis that is going away), counting them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def test_a_failed_publish_opens_the_breaker_so_later_steps_do_not_touch_redis(
    refusing_redis,
    settings,
    monkeypatch,  # noqa: ANN001
) -> None:
    port, accepted = refusing_redis
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.CACHE_RETRY_AFTER_S = 60.0
    monkeypatch.setattr(events, "_client", None)

    assert events.event_publish("job-1", "progress", {"step": 1, "total": 8}) is None
    tried = len(accepted)
    assert tried >= 1  # it did try Redis once
    for step in range(2, 9):  # the rest of the job's steps
        assert events.event_publish("job-1", "progress", {"step": step, "total": 8}) is None
    assert len(accepted) == tried  # ...and not again while the breaker is open

    settings.CACHE_RETRY_AFTER_S = 0.0  # the breaker's time is up: the next publish tries Redis again
    assert events.event_publish("job-1", "progress", {"step": 9, "total": 8}) is None
    assert len(accepted) > tried
