"""Celery tasks: ingest a batch of a job's documents; write handed-off units at the index owner; the KV follow-up."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from haystack import Document

from ragpress.base.settings import get_settings
from ragpress.workers import job_metrics, runtime
from ragpress.workers.celery_app import INDEX_QUEUE, INGEST_QUEUE, get_celery
from ragpress.workers.ingestion import TRANSIENT, failure_reason, is_transient, process_batch, write_handed_off
from ragpress.workers.job_store import FAILED
from ragpress.workers.kv_follow_up import follow_up_items, kv_mode, run_follow_up

logger = logging.getLogger(__name__)
app = get_celery()

# Transient failures (a store or broker hiccup) are retried with backoff; a bad document is not an
# exception here: process_batch records it as failed and moves on. The ingestion tasks decide on a retry
# themselves (_will_retry), since they must fail their documents once retries run out.
_MAX_RETRIES, _BACKOFF_S, _BACKOFF_MAX_S = 5, 2, 60
_RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": _BACKOFF_S, "retry_backoff_max": _BACKOFF_MAX_S,
          "retry_jitter": True, "max_retries": _MAX_RETRIES}


@app.task(name="ragpress.workers.tasks.ingest_batch", bind=True, acks_late=True, max_retries=_MAX_RETRIES)
def ingest_batch(self: Task, job_id: str, seqs: list[int]) -> None:
    store = runtime.job_store()
    try:
        process_batch(store, runtime.ingestion_pipeline(), job_id, seqs, runtime.owns_index(), _hand_off,
                      _queue_kv_follow_up, may_retry=self.request.retries < self.max_retries)
    except Exception as exc:
        if _will_retry(self, exc):
            store.requeue(job_id, seqs)
            raise self.retry(exc=exc, countdown=_backoff(self)) from exc
        _fail_unfinished(job_id, seqs, exc)
    job_metrics.batch_done(store, job_id)


@app.task(name="ragpress.workers.tasks.write_units", bind=True, acks_late=True, max_retries=_MAX_RETRIES)
def write_units(self: Task, job_id: str, units: list[dict[str, Any]], done: dict[str, int]) -> None:
    store = runtime.job_store()
    try:
        write_handed_off(store, job_id, units, {int(k): v for k, v in done.items()})
    except Exception as exc:
        if _will_retry(self, exc):
            raise self.retry(exc=exc, countdown=_backoff(self)) from exc
        _fail_unfinished(job_id, [int(k) for k in done], exc)
    job_metrics.batch_done(store, job_id)


def _will_retry(task: Task, exc: Exception) -> bool:
    # the pipeline wraps a component's exception, so autoretry_for (which sees only the wrapper) cannot decide
    return is_transient(exc) and task.request.retries < task.max_retries


def _backoff(task: Task) -> int:
    return get_exponential_backoff_interval(_BACKOFF_S, task.request.retries, _BACKOFF_MAX_S, full_jitter=True)


def _fail_unfinished(job_id: str, seqs: list[int], exc: Exception) -> None:
    """No exception may leave a job running: a failure the batch did not record per document (a pipeline that
    cannot load, a hiccup that outlived its retries) fails the documents the task still holds, with the reason."""
    logger.warning("task of job %s failed: %s", job_id, exc, exc_info=exc)
    closed = runtime.job_store().close_unfinished(job_id, seqs, FAILED, failure_reason(exc))
    job_metrics.documents_failed(job_metrics.TRANSIENT if is_transient(exc) else job_metrics.TASK, closed)


def _hand_off(job_id: str, units: list[dict[str, Any]], done: dict[int, int]) -> None:
    write_units.apply_async(args=(job_id, units, {str(k): v for k, v in done.items()}), queue=INDEX_QUEUE)


@app.task(name="ragpress.workers.tasks.kv_follow_up", bind=True, acks_late=True, **_RETRY)
def kv_follow_up(self: Task, job_id: str, tenant: str, collection: str, items: list[dict[str, Any]]) -> None:
    run_follow_up(runtime.job_store(), job_id, tenant, collection, items)


def _queue_kv_follow_up(job_id: str, tenant: str, collection: str, sources: list[Document],
                        units: list[Document]) -> None:
    store = runtime.job_store()
    items = follow_up_items(sources, units, eager=kv_mode(store, tenant, collection) == "eager")
    if not items:
        return
    store.kv_queued(job_id, [item["doc_id"] for item in items])
    # States on local disk live in the index owner's data folder, so its process computes them; a shared
    # (Redis) KV store lets any ingestion worker do it.
    queue = INGEST_QUEUE if get_settings().kv_store_url else INDEX_QUEUE
    kv_follow_up.apply_async(args=(job_id, tenant, collection, items), queue=queue)


def enqueue_job(job_id: str, seqs: list[int], batch_size: int) -> int:
    """Send a job's pending documents as batch tasks; returns how many tasks were sent."""
    batches = [seqs[i:i + batch_size] for i in range(0, len(seqs), batch_size)]
    for batch in batches:
        ingest_batch.apply_async(args=(job_id, batch))
    return len(batches)
