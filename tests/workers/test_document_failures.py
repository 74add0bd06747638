"""Whatever a document raises, it fails alone with its reason and its job ends: never a job left running.

In-process: batches go through ``process_batch`` with the real ingestion pipeline into the process's embedded
Qdrant Edge index. The unexpected error is a real one: meta holding ``float('inf')`` (what the JSON number 1e400
parses to), which the index refuses to store, so the pipeline raises in its writer.
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu.utils.json import dumps, loads

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.workers.ingestion import process_batch, write_handed_off
from ragpress.workers.job_store import JobStore

pytestmark = pytest.mark.integration

TENANT = "default"
GOOD = "The Millau Viaduct spans the valley of the Tarn. Its tallest mast reaches 343 metres above the river."
BAD = "Foster also designed the Gherkin in London. Its meta holds a number no index can store."


def _job(job_store: JobStore, collection: str, bad: bool, good: bool) -> str:
    docs = [("good", schema.content_hash(GOOD), GOOD, {})] if good else []
    if bad:
        docs.append(("bad", schema.content_hash(BAD), BAD, {"weight": float("inf")}))
    return job_store.create_job(TENANT, collection, docs)


def _indexed_doc_ids(collection: str) -> set[str]:
    return {u.meta[schema.DOC_ID] for u in shared_store().filter_documents(scope_filters(TENANT, collection))}


def test_a_job_of_one_document_that_raises_ends_failed_with_the_reason(job_store: JobStore, pipeline: Any) -> None:
    job_id = _job(job_store, "one-bad", bad=True, good=False)
    process_batch(job_store, pipeline, job_id, job_store.pending_seqs(job_id), owns_index=True)
    job = job_store.job(job_id, TENANT) or {}
    assert job["status"] == "failed" and job["failed"] == 1
    assert job["errors"][0]["doc_id"] == "bad" and "inf" in job["errors"][0]["error"]
    assert _indexed_doc_ids("one-bad") == set()


def test_beside_a_good_document_the_one_that_raises_fails_alone(job_store: JobStore, pipeline: Any) -> None:
    job_id = _job(job_store, "bad-and-good", bad=True, good=True)
    process_batch(job_store, pipeline, job_id, job_store.pending_seqs(job_id), owns_index=True)
    job = job_store.job(job_id, TENANT) or {}
    assert job["status"] == "partial" and job["done"] == 1 and [e["doc_id"] for e in job["errors"]] == ["bad"]
    assert _indexed_doc_ids("bad-and-good") == {"good"}


def test_a_handed_off_write_that_raises_fails_only_its_document(job_store: JobStore, pipeline: Any) -> None:
    """A worker that does not own the index hands the batch's units to the owner (as JSON, like the broker); the
    owner's write task, run apart from the batch, fails only the document whose units the index refuses."""
    handed_off: list[tuple[str, list[dict[str, Any]], dict[int, int]]] = []
    job_id = _job(job_store, "handed-off", bad=True, good=True)
    process_batch(job_store, pipeline, job_id, job_store.pending_seqs(job_id), owns_index=False,
                  hand_off=lambda *task: handed_off.append(task))
    assert len(handed_off) == 1  # both documents converted, chunked and embedded together
    for task_job_id, units, done in handed_off:
        write_handed_off(job_store, task_job_id, loads(dumps(units)), done)
    job = job_store.job(job_id, TENANT) or {}
    assert job["status"] == "partial" and [e["doc_id"] for e in job["errors"]] == ["bad"]
    assert _indexed_doc_ids("handed-off") == {"good"}
