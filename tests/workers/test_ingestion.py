"""The builtin ingestion pipeline fills the multi-scale index: every level, its hierarchy, dense and sparse vectors.

In-process: a batch goes through ``process_batch`` with the real pipeline (MiniLM) into the process's embedded
Qdrant Edge index, as a worker that owns the index runs it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.indexers.chunk_writer import retire_units
from ragpress.workers.ingestion import process_batch
from ragpress.workers.job_store import JobStore

pytestmark = pytest.mark.integration

TENANT = "default"
TEXT = ("# The viaduct\n\nThe Millau Viaduct is a cable-stayed bridge in southern France. It spans the valley of "
        "the Tarn near Millau. Its deck was launched from both sides of the valley in stages. The structure "
        "opened in December 2004 after three years of work. One of its masts reaches 343 metres above the river, "
        "which makes it the tallest bridge in the world.\n\n## Design\n\nIt was designed by the engineer Michel "
        "Virlogeux with the architect Norman Foster. Foster also designed the Gherkin in London. The pair chose "
        "seven slender piers so the bridge would look light against the landscape.")


def _ingest(job_store: JobStore, pipeline: Any, collection: str, text: str = TEXT) -> dict[str, Any]:
    job_id = job_store.create_job(TENANT, collection, [("viaduct", schema.content_hash(text), text, {})])
    process_batch(job_store, pipeline, job_id, job_store.pending_seqs(job_id), owns_index=True)
    return job_store.job(job_id, TENANT) or {}


def _units(collection: str) -> list[Any]:
    return shared_store().filter_documents(scope_filters(TENANT, collection))


def test_a_document_is_indexed_at_every_scale_with_its_hierarchy(job_store: JobStore, pipeline: Any) -> None:
    assert _ingest(job_store, pipeline, "scales")["status"] == "succeeded"
    units = _units("scales")
    levels = Counter(u.meta[schema.LEVEL] for u in units)
    assert levels["document"] == 1 and levels["section"] == 2 and levels["slice"] > levels["chunk"] >= 2
    by_id = {u.id: u for u in units}
    parent_level = {"document": None, "section": "document", "chunk": "section", "slice": "chunk"}
    for unit in units:
        meta = unit.meta
        assert unit.content == TEXT[meta[schema.START]:meta[schema.END]]
        assert meta[schema.SENTENCES] and all(0 <= s < e <= len(unit.content) for s, e in meta[schema.SENTENCES])
        assert unit.embedding is not None and len(unit.embedding) == 384
        assert unit.sparse_embedding is not None and unit.sparse_embedding.indices  # BM25, for hybrid search
        parent = by_id.get(meta[schema.PARENT_ID])
        assert (parent.meta[schema.LEVEL] if parent else None) == parent_level[meta[schema.LEVEL]]
        if parent is not None:
            assert parent.meta[schema.START] <= meta[schema.START] < meta[schema.END] <= parent.meta[schema.END]
    chunks = sorted((u for u in units if u.meta[schema.LEVEL] == "chunk"), key=lambda u: u.meta[schema.POSITION])
    assert [u.meta[schema.POSITION] for u in chunks] == list(range(len(chunks)))


def test_indexing_the_same_content_again_adds_no_points_and_a_delete_removes_every_level(
        job_store: JobStore, pipeline: Any) -> None:
    _ingest(job_store, pipeline, "again")
    first = {u.id for u in _units("again")}
    job_store.forget_document(TENANT, "again", "viaduct")  # so the job store does not skip it as unchanged
    assert _ingest(job_store, pipeline, "again")["status"] == "succeeded"
    assert {u.id for u in _units("again")} == first
    assert retire_units(shared_store(), TENANT, "again", "viaduct") == len(first)
    assert _units("again") == []
