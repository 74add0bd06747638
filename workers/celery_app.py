"""The Celery app: in-process worker threads in the embedded default, Redis (or RabbitMQ) when distributed.

Two queues: ``ingest`` (convert, chunk, embed: CPU-heavy, runs on any worker) and ``index`` (writes to
the index). An embedded index has exactly one owner process, so with an embedded index the ``index``
queue is consumed only by ``ragpress serve``; with a Qdrant server any worker may write directly.
"""

from __future__ import annotations

from celery import Celery

from ragpress.base.settings import Settings, get_settings

INGEST_QUEUE = "ingest"
INDEX_QUEUE = "index"
MEMORY_POLL_S = 0.02

_app: Celery | None = None


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker_url or "memory://"
    backend = settings.broker_url if broker.startswith(("redis://", "rediss://")) else "cache+memory://"
    app = Celery("ragpress", broker=broker, backend=backend, include=["ragpress.workers.tasks"])
    app.conf.update(
        task_acks_late=True,  # a task killed mid-way is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long batch must not hold others hostage in a dead worker
        task_default_queue=INGEST_QUEUE,
        task_routes={"ragpress.workers.tasks.write_units": {"queue": INDEX_QUEUE}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # Redis redelivers a dead worker's unacknowledged task after this; tasks are idempotent, so an early
        # redelivery of a slow but live task only costs time.
        broker_transport_options=_transport_options(broker, settings),
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
    return app


def _transport_options(broker: str, settings: Settings) -> dict[str, float]:
    options: dict[str, float] = {"visibility_timeout": settings.task_visibility_timeout_s}
    if broker.startswith("memory://"):
        # The in-process queue is polled, once a second by default: each batch of an ingestion (and its KV
        # follow-up) waited up to that long for a worker thread that sat idle. A poll is a lock and a deque.
        options["polling_interval"] = MEMORY_POLL_S
    return options


def get_celery() -> Celery:
    global _app
    if _app is None:
        _app = make_celery(get_settings())
    return _app
