"""Riding out a short database outage in the worker without giving up the message in hand.

A message taken while PostgreSQL is away used to be retried three times in seven seconds and then
dropped, to be found by the reconciler minutes later while later jobs ran first. Instead the task
keeps its (unacknowledged, late-acked) message and tries again with a growing pause; with prefetch 1
and concurrency 1 nothing overtakes it, so the queue's order survives the outage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
FIRST_PAUSE_S = 0.5
LONGEST_PAUSE_S = 5.0

T = TypeVar("T")


class DatabaseStillDown(Exception):
    """The database stayed away for DB_OUTAGE_WAIT_S."""


def _drop_connections() -> None:
    for connection in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):  # already broken: closing is all that was wanted
            connection.close()


def database_wait(step: Callable[[], T], *, what: str, wait_s: float | None = None) -> T:
    """step(), tried again while the database is unreachable, for up to DB_OUTAGE_WAIT_S in all.

    Only connection-level errors are waited out; anything else (a constraint, a bad query) raises at
    once. Raises DatabaseStillDown when the database is not back in time.
    """
    wait_s = settings.DB_OUTAGE_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    pause = FIRST_PAUSE_S
    while True:
        try:
            return step()
        except DATABASE_ERRORS as error:
            _drop_connections()  # the next try opens a fresh connection
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseStillDown(f"the database was unreachable for {wait_s:g} s ({what}): {error}") from error
            pause = min(pause, left)
            logger.warning("database unavailable (%s): %s; trying again in %.1f s", what, str(error).strip(), pause)
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)
