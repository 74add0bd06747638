"""Celery worker threads inside the serving process (the embedded default: nothing else to start)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """Runs a real Celery WorkController with a thread pool on a background thread.

    The full ``celery worker`` program installs signal handlers, which only the main thread may do; the
    WorkController underneath does not, so it can live beside the web server.
    """

    def __init__(self, app: Celery, queues: list[str], concurrency: int) -> None:
        self.app = app
        self.queues = queues
        self.concurrency = concurrency
        self._controller: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.app.loader.import_default_modules()  # register the tasks before the first message arrives
        self._controller = self.app.WorkController(
            pool_cls="threads", concurrency=self.concurrency, queues=self.queues, loglevel="WARNING",
            without_heartbeat=True, without_mingle=True, without_gossip=True, hostname="ragpress-embedded@%h",
        )
        self._thread = threading.Thread(target=self._controller.start, name="celery-embedded", daemon=True)
        self._thread.start()
        logger.info("embedded worker: %d threads on queues %s", self.concurrency, ",".join(self.queues))

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout=10)
