"""Index one batch of a job's documents: convert, chunk, embed, write; one document's failure stays its own.

Documents are processed together for throughput; if the batch raises, each document is retried alone so
only the bad one fails, with its reason recorded. Whatever a document raises marks it failed, so no document
can leave its job running; only a store or broker hiccup (``TRANSIENT``) propagates, for the task to retry.
Where this process does not own the index, the embedded units are handed to the owner as a write task
instead of being written here.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import sqlalchemy.exc
from haystack import Document

from ragpress.base import schema
from ragpress.indexers.chunk_writer import ChunkWriter
from ragpress.indexers.converters import TextConverter
from ragpress.pipelines.subgraph import components_of_type, upstream_of, without
from ragpress.workers import job_metrics
from ragpress.workers.job_store import JobStore, PendingDocument

logger = logging.getLogger(__name__)

# Store or broker hiccups: the task retries them with backoff, then fails the documents they still hold.
TRANSIENT = (ConnectionError, TimeoutError, OSError, sqlalchemy.exc.OperationalError, kombu.exceptions.OperationalError)
HandOff = Callable[[str, list[dict[str, Any]], dict[int, int]], None]
# Called once a batch's units are written (or ready to hand to the index owner) with (job_id, tenant,
# collection, converted source documents, units): queues the KV follow-up, off the indexing path.
AfterIndexed = Callable[[str, str, str, list[Document], list[Document]], None]


def source_documents(tenant: str, collection: str, pending: list[PendingDocument]) -> list[Document]:
    return [
        Document(content=p.text, meta={
            **p.meta, schema.TENANT: tenant, schema.COLLECTION: collection, schema.DOC_ID: p.doc_id,
            schema.CONTENT_HASH: p.content_hash,
        })
        for p in pending
    ]


def writer_name(pipeline: Any) -> str:
    names = components_of_type(pipeline, ChunkWriter)
    if len(names) != 1:
        raise ValueError("An ingestion pipeline needs exactly one ragpress.indexers.chunk_writer.ChunkWriter.")
    return names[0]


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a store or broker hiccup worth retrying (a pipeline wraps its
    components' exceptions, so the cause is what says)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TRANSIENT):
            return True
        cause = cause.__cause__
    return False


def process_batch(store: JobStore, pipeline: Any, job_id: str, seqs: list[int], owns_index: bool,
                  hand_off: HandOff | None = None, after_indexed: AfterIndexed | None = None,
                  may_retry: bool = True) -> None:
    """Index the batch; a document that fails is marked failed with the reason. A transient failure propagates
    for the task to retry while ``may_retry``; on the last attempt it fails its document like any other, so a
    document that keeps raising one does not take its neighbours down with it."""
    scope = store.job_scope(job_id)
    if scope is None:
        logger.warning("job %s no longer exists; dropping its batch", job_id)
        return
    pending = store.claim(job_id, seqs)
    run = functools.partial(_run, store, pipeline, job_id, scope, owns_index=owns_index, hand_off=hand_off,
                            after_indexed=after_indexed)
    if len(pending) > 1:
        try:
            run(pending)
            return
        except Exception as exc:
            if may_retry and is_transient(exc):
                raise
            logger.info("batch of job %s failed; retrying its %d documents one by one", job_id, len(pending))
    for item in pending:
        _run_alone(store, job_id, item, run, may_retry)


def _run_alone(store: JobStore, job_id: str, item: PendingDocument, run: Callable[[list[PendingDocument]], None],
               may_retry: bool) -> None:
    try:
        run([item])
    except Exception as exc:
        if may_retry and is_transient(exc):
            raise
        store.fail_document(job_id, item.seq, failure_reason(exc))
        job_metrics.documents_failed(job_metrics.TRANSIENT if is_transient(exc) else job_metrics.PROCESSING)


def _run(store: JobStore, pipeline: Any, job_id: str, scope: tuple[str, str], pending: list[PendingDocument], *,
         owns_index: bool, hand_off: HandOff | None, after_indexed: AfterIndexed | None) -> None:
    tenant, collection = scope
    writer = writer_name(pipeline)
    sources = source_documents(tenant, collection, pending)
    converters = set(components_of_type(pipeline, TextConverter))  # the text the units' offsets point into
    outputs = upstream_of(pipeline, writer) | converters
    if owns_index:
        result = pipeline.run({"documents": sources}, include_outputs_from=outputs)
    else:
        result = without(pipeline, {writer}).run({"documents": sources}, include_outputs_from=outputs)
    failed = _failed_seqs(result, pending)
    for seq, reason in failed.items():
        store.fail_document(job_id, seq, reason)
    units = _units(result, pipeline, writer)
    counts = Counter(u.meta.get(schema.DOC_ID) for u in units)  # doc ids are unique within a job
    done = {p.seq: counts.get(p.doc_id, 0) for p in pending if p.seq not in failed}
    # queued before the documents count as done, so a job never reads "succeeded" with its follow-up unrecorded
    if after_indexed is not None and done:
        indexed = {p.doc_id for p in pending if p.seq in done}
        converted = [d for name in converters for d in result.get(name, {}).get("documents", [])
                     if (d.meta or {}).get(schema.DOC_ID) in indexed]
        try:
            after_indexed(job_id, tenant, collection, converted, units)
        except Exception as exc:  # the units are written: a follow-up that cannot be queued is only a warning
            logger.warning("KV follow-up of job %s not queued: %s", job_id, exc)
    if owns_index:
        for seq, n in done.items():
            store.finish_document(job_id, seq, tenant, collection, n)
    else:
        if hand_off is None:
            raise RuntimeError("This process does not own the index and has no way to hand writes off.")
        hand_off(job_id, [u.to_dict(flatten=False) for u in units], done)
    # counted once the batch went through: a batch that raises is run again document by document
    job_metrics.documents_failed(job_metrics.CONVERSION, len(failed))  # only converters report failed documents


def _units(result: dict[str, Any], pipeline: Any, writer: str) -> list[Document]:
    units: list[Document] = []
    for name in upstream_of(pipeline, writer):
        units.extend(result.get(name, {}).get("documents", []))
    return units


def _failed_seqs(result: dict[str, Any], pending: list[PendingDocument]) -> dict[int, str]:
    by_doc = {p.doc_id: p.seq for p in pending}
    failed: dict[int, str] = {}
    for outputs in result.values():
        for item in outputs.get("failed", []) if isinstance(outputs, dict) else []:
            seq = by_doc.get(item.get("doc_id"))
            if seq is not None:
                failed[seq] = item["error"]
    return failed


def failure_reason(exc: BaseException) -> str:
    """The innermost cause: the pipeline's wrapper names the component, the cause says what went wrong."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)[:2000] or exc.__class__.__name__


def write_handed_off(store: JobStore, job_id: str, units: list[dict[str, Any]], done: dict[int, int]) -> None:
    """The index owner's half of a hand-off: write the units, then mark their documents indexed, or failed with
    the reason when their own units cannot be written."""
    scope = store.job_scope(job_id)
    if scope is None:
        return
    failed = _write([Document.from_dict(u) for u in units])
    doc_ids = store.doc_ids(job_id, list(done)) if failed else {}
    for seq, n in done.items():
        reason = failed.get(doc_ids.get(seq, ""))
        if reason is None:
            store.finish_document(job_id, int(seq), scope[0], scope[1], n)
        else:
            store.fail_document(job_id, int(seq), reason)
            job_metrics.documents_failed(job_metrics.INDEX_WRITE)


def _write(units: list[Document]) -> dict[str, str]:
    """Write units together; if that fails, write each document's alone: returns why, by doc id, for those
    that still fail. A transient failure propagates for the task to retry."""
    try:
        ChunkWriter().run(documents=units)
        return {}
    except Exception as exc:
        if is_transient(exc):
            raise
    by_document: dict[str, list[Document]] = defaultdict(list)
    for unit in units:
        by_document[unit.meta.get(schema.DOC_ID, "")].append(unit)
    failed: dict[str, str] = {}
    for doc_id, its_units in by_document.items():
        try:
            ChunkWriter().run(documents=its_units)
        except Exception as exc:
            if is_transient(exc):
                raise
            failed[doc_id] = failure_reason(exc)
    return failed
