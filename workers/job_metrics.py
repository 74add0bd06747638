"""Ingestion metrics, recorded where jobs run: how long a job takes to finish, and why documents fail.

A failure is counted by its reason class, never its message: messages quote documents and file names, and each
distinct one would be a new time series. The embedded workers of ``ragpress serve`` share its ``/metrics``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from ragpress.workers.job_store import QUEUED, RUNNING, JobStore

logger = logging.getLogger(__name__)

JOB_SECONDS = Histogram("ragpress_ingestion_job_seconds", "Ingestion jobs from submission to their last document, "
                        "by final status", ["status"],
                        buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, math.inf))
DOCUMENT_FAILURES = Counter("ragpress_ingestion_document_failures_total", "Documents an ingestion job failed, "
                            "by reason class", ["reason"])

# The reason classes: who can fix it, and whether retrying later may help.
CONVERSION = "conversion"  # the document could not be read (a bad file, no text): the submitter's to fix
PROCESSING = "processing"  # a pipeline component raised on the document
INDEX_WRITE = "index_write"  # the index refused the document's units
TRANSIENT = "transient"  # a store or broker hiccup that outlived its retries
TASK = "task"  # the task failed before reaching its documents (e.g. the ingestion pipeline does not load)

# Two batches of one job can finish at once and both see it finished: a job is observed once per process.
_REMEMBERED = 10_000
_observed: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()


def documents_failed(reason: str, count: int = 1) -> None:
    DOCUMENT_FAILURES.labels(reason).inc(count)


def batch_done(store: JobStore, job_id: str) -> None:
    """Observe the job's duration if this batch finished it. Never raises: a metric must not fail or retry a task."""
    try:
        scope = store.job_scope(job_id)
        job = store.job(job_id, scope[0]) if scope is not None else None
    except Exception as exc:
        logger.warning("job %s not measured: %s", job_id, exc.__class__.__name__)
        return
    if job is None or job["status"] in (QUEUED, RUNNING) or not _first_sight(job_id):
        return
    JOB_SECONDS.labels(job["status"]).observe(_seconds_since(job["created_at"]))


def _first_sight(job_id: str) -> bool:
    with _lock:
        if job_id in _observed:
            return False
        _observed[job_id] = None
        while len(_observed) > _REMEMBERED:
            _observed.popitem(last=False)
        return True


def _seconds_since(created_at: str) -> float:
    created = datetime.fromisoformat(created_at)
    if created.tzinfo is None:  # SQLite hands back the stored UTC time without its zone
        created = created.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - created).total_seconds())
