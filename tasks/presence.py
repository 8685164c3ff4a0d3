"""Worker presence: the worker's main process writes a WorkerHeartbeat row every few seconds from a
thread of its own, so that readiness (/readyz?workers=1) and the queue can tell when no worker serves
a queue. The row goes when the worker shuts down cleanly; a killed worker's row goes stale.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import connection
from django.utils import timezone

from image_model_domain.workers import worker_forget, worker_heartbeat

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, hostname: str, queues: list[str]) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.hostname = hostname
        self.queues = queues
        self.started_at = timezone.now()
        self.stopping = threading.Event()

    def beat(self) -> None:
        try:
            worker_heartbeat(hostname=self.hostname, queues=self.queues, pid=os.getpid(), started_at=self.started_at)
        except Exception as error:  # the database may be briefly away; the next beat tries again
            logger.warning("could not write the worker heartbeat: %s", error)
        finally:
            # Note: the prefork pool forks pool processes from this process; a connection held open
            # by this thread would be inherited by them, and a child closing it ends the parent's
            # session too. A short connection per beat (every few seconds) avoids the shared socket.
            connection.close()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.beat()
            self.stopping.wait(settings.WORKER_HEARTBEAT_INTERVAL_S)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
        try:
            worker_forget(hostname=self.hostname)
        except Exception as error:
            logger.warning("could not remove the worker heartbeat: %s", error)
        finally:
            connection.close()


_heartbeat: Heartbeat | None = None


@worker_ready.connect
def start_heartbeat(sender: Any, **kwargs: Any) -> None:  # sender: the worker's Consumer
    global _heartbeat
    # Job queues only: the registry broadcast gives each worker a private queue on a fanout exchange.
    consumed = sender.app.amqp.queues.consume_from.values()
    queues = sorted(queue.name for queue in consumed if queue.exchange is None or queue.exchange.type != "fanout")
    _heartbeat = Heartbeat(sender.hostname, queues)
    _heartbeat.start()
    logger.info("heartbeat every %s s as %s on %s", settings.WORKER_HEARTBEAT_INTERVAL_S, sender.hostname, queues)


@worker_shutdown.connect
def stop_heartbeat(**kwargs: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
