"""Celery tasks: ingest a batch of a job's documents; write handed-off units at the index owner."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from workers import runtime
from workers.celery_app import INDEX_QUEUE, get_celery
from workers.ingestion import process_batch, write_handed_off

logger = logging.getLogger(__name__)
app = get_celery()

# Transient failures (a store or broker hiccup) are retried with backoff; a bad document is not an
# exception here: process_batch records it as failed and moves on.
_RETRY = {"autoretry_for": (ConnectionError, TimeoutError, OSError), "retry_backoff": 2,
          "retry_backoff_max": 60, "retry_jitter": True, "max_retries": 5}


@app.task(name="workers.tasks.ingest_batch", bind=True, acks_late=True, **_RETRY)
def ingest_batch(self: Task, job_id: str, seqs: list[int]) -> None:
    store = runtime.job_store()
    try:
        process_batch(store, runtime.ingestion_pipeline(), job_id, seqs, runtime.owns_index(), _hand_off)
    except (ConnectionError, TimeoutError, OSError):
        store.requeue(job_id, seqs)
        raise


@app.task(name="workers.tasks.write_units", bind=True, acks_late=True, **_RETRY)
def write_units(self: Task, job_id: str, units: list[dict[str, Any]], done: dict[str, int]) -> None:
    write_handed_off(runtime.job_store(), job_id, units, {int(k): v for k, v in done.items()})


def _hand_off(job_id: str, units: list[dict[str, Any]], done: dict[int, int]) -> None:
    write_units.apply_async(args=(job_id, units, {str(k): v for k, v in done.items()}), queue=INDEX_QUEUE)


def enqueue_job(job_id: str, seqs: list[int], batch_size: int) -> int:
    """Send a job's pending documents as batch tasks; returns how many tasks were sent."""
    batches = [seqs[i:i + batch_size] for i in range(0, len(seqs), batch_size)]
    for batch in batches:
        ingest_batch.apply_async(args=(job_id, batch))
    return len(batches)
