"""The Redis cache as an optimisation only: when Redis fails, every read is a miss and every write a no-op.

The API caches finished jobs and registry lists and keeps the submission throttle's counters in
Redis. None of that may turn a Redis outage into a 500: django-redis's IGNORE_EXCEPTIONS makes a
failed call return its default, and the circuit breaker below stops a dead Redis from costing each
request a connect timeout. After a failure the cache is skipped for CACHE_RETRY_AFTER_S seconds
(per process), then one request tries Redis again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """Open for retry_after seconds after a failure; shared by every thread of the process."""

    def __init__(self, retry_after: float, what: str = "cache") -> None:
        self.retry_after = retry_after
        self.what = what
        self.open_until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def trip(self, error: BaseException) -> None:
        with self._lock:
            if not self.is_open():
                logger.warning("%s unavailable, going without it for %.0f s: %s", self.what, self.retry_after, error)
            self.open_until = time.monotonic() + self.retry_after

    def reset(self) -> None:
        self.open_until = 0.0


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(location: str, retry_after: float, what: str = "cache") -> CircuitBreaker:
    with _breakers_lock:
        breaker = _breakers.get(location)
        if breaker is None or breaker.retry_after != retry_after:
            breaker = _breakers[location] = CircuitBreaker(retry_after, what)
        return breaker


class _GuardedClient:
    """django-redis's client behind the breaker: while open, every call fails at once (no connect)."""

    def __init__(self, client: Any, breaker: CircuitBreaker) -> None:
        self._client = client
        self._breaker = breaker

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        breaker = self._breaker

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if breaker.is_open():
                raise ConnectionInterrupted(connection=None) from ConnectionError("the cache circuit is open")
            try:
                return attribute(*args, **kwargs)
            except ConnectionInterrupted as error:
                breaker.trip(error)
                raise

        return guarded


class ResilientRedisCache(RedisCache):
    """RedisCache whose failures are misses (IGNORE_EXCEPTIONS) behind a per-process circuit breaker.

    OPTIONS: RETRY_AFTER_S (seconds to skip Redis after a failure), plus django-redis's own.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        retry_after = float(options.pop("RETRY_AFTER_S", 5.0))
        options["IGNORE_EXCEPTIONS"] = True
        super().__init__(server, {**params, "OPTIONS": options})
        self.breaker = breaker_for(server, retry_after)

    @property
    def client(self) -> Any:
        return _GuardedClient(super().client, self.breaker)
