"""Resume the jobs a dead index owner left behind.

In the embedded default the broker is in-process memory: when ``ragpress serve`` dies (or just restarts) every
queued task is gone, while the job store still holds each unfinished document's text. So the process that owns
the index and consumes the queues, once at start and before anything else is queued:

1. reconciles each document a worker had claimed: the index keeps only the units of the version the registry
   records (the last one fully indexed; none for a new document), so a replace cut between writing the new
   units and retiring the old ones leaves one version, never both;
2. sends every job's queued and interrupted documents again; a re-run writes the new version and retires
   the old one, and the job ends ``succeeded`` or ``partial`` as if nothing had happened.

With a real broker (Redis) none of this runs: queued tasks outlive the process, and a task a dead process held
is redelivered after the visibility timeout (``acks_late``), so sending documents again would duplicate work
that live workers hold, and reconciling could retire units a live worker's write task is writing at that
moment. There the redelivered write task settles an interrupted replace (it writes the new version, then
retires the old).
"""

from __future__ import annotations

import logging
from collections import defaultdict

from ragpress.base.document_stores import shared_store
from ragpress.base.settings import Settings
from ragpress.indexers.chunk_writer import retire_units
from ragpress.workers import runtime
from ragpress.workers.job_store import CANCELLED, JobStore, UnfinishedDocument
from ragpress.workers.tasks import enqueue_job

logger = logging.getLogger(__name__)


def recover_interrupted_jobs(settings: Settings) -> int:
    """Reconcile and re-queue what the previous process left unfinished; returns how many documents were
    sent again. Call it once the worker runs, in the process that owns the index and consumes the queues."""
    if settings.distributed_queue or not settings.consume_ingest_queue or not runtime.owns_index():
        return 0
    store = runtime.job_store()
    unfinished = store.unfinished_documents()
    if not unfinished:
        return 0
    retired = _reconcile(store, [d for d in unfinished if d.touched])
    by_job: dict[str, list[UnfinishedDocument]] = defaultdict(list)
    for document in unfinished:
        by_job[document.job_id].append(document)
    resent = sum(_resume(store, job_id, docs, settings.ingest_batch_size) for job_id, docs in by_job.items())
    logger.warning("resuming %d documents of %d unfinished jobs; retired %d units that interrupted writes left",
                   resent, len(by_job), retired)
    return resent


def _reconcile(store: JobStore, interrupted: list[UnfinishedDocument]) -> int:
    """Leave each interrupted document with the units of its registered version only; returns how many
    units were retired."""
    index = shared_store()
    retired = 0
    for tenant, collection, doc_id in {(d.tenant, d.collection, d.doc_id) for d in interrupted}:
        registered = store.document_hash(tenant, collection, doc_id)
        retired += retire_units(index, tenant, collection, doc_id, keep_hashes={registered} if registered else None)
    return retired


def _resume(store: JobStore, job_id: str, documents: list[UnfinishedDocument], batch_size: int) -> int:
    seqs = [d.seq for d in documents]
    if documents[0].cancelled:  # nothing claims a cancelled job's documents: close them as the cancel would have
        store.close_unfinished(job_id, seqs, CANCELLED)
        return 0
    enqueue_job(job_id, seqs, batch_size)
    return len(seqs)
