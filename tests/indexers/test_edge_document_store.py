"""The Edge document store: what it promises beyond agreeing with qdrant-haystack (see test_store_congruence).

Persistence, crash recovery through the WAL, one owner per folder, HNSW after ``optimize()``, BM25 from text,
strict filters, and retriever components that behave like Haystack's and survive a YAML round trip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.core.errors import DeserializationError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack_integrations.document_stores.qdrant.converters import convert_id

from ragpress.base.edge_document_store import EdgeDocumentStore, EdgeStoreError
from ragpress.base.edge_lock import IndexLockedError, owner_pid
from ragpress.indexers.edge_retrievers import EdgeEmbeddingRetriever, EdgeHybridRetriever, EdgeSparseEmbeddingRetriever

REPO = Path(__file__).resolve().parents[2]
DIM = 16
TENANT_T1 = {"field": "meta.tenant", "operator": "==", "value": "t1"}


def vectors(n: int, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def chunks(n: int, seed: int = 0) -> list[Document]:
    matrix = vectors(n, seed)
    return [Document(id=f"chunk-{i}", content=f"chunk {i} about {'bridges' if i % 2 else 'rivers'}",
                     embedding=matrix[i].tolist(),
                     meta={"tenant": f"t{i % 3}", "collection": "docs", "doc_id": f"d{i // 4}", "level": "chunk"})
            for i in range(n)]


@pytest.fixture()
def store(tmp_path) -> EdgeDocumentStore:
    edge = EdgeDocumentStore(path=str(tmp_path / "index"), embedding_dim=DIM)
    yield edge
    edge.close()


def run_child(code: str, *args: str) -> subprocess.Popen:
    """A real second process running ``code`` with the repo importable; its stdout is a line protocol."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})


# ---------------------------------------------------------------- persistence and ownership

@pytest.mark.integration
def test_documents_persist_and_reload_from_the_folder(tmp_path):
    first = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM)
    first.write_documents(chunks(40))
    first.delete_documents(["chunk-3"])
    first.close()

    reopened = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM)
    assert reopened.count_documents() == 39
    assert reopened.count_documents_by_filter(TENANT_T1) == 13
    nearest = reopened.embedding_retrieval(query_embedding=chunks(40)[7].embedding, top_k=1)
    assert nearest[0].id == "chunk-7" and nearest[0].meta["doc_id"] == "d1"
    reopened.close()


@pytest.mark.integration
def test_a_second_process_is_told_who_owns_the_index(tmp_path):
    owner = run_child("""
        import sys
        from ragpress.base.edge_document_store import EdgeDocumentStore
        store = EdgeDocumentStore(path=sys.argv[1], embedding_dim=16)
        store.count_documents()
        print("ready", flush=True)
        sys.stdin.read()
    """, str(tmp_path))
    try:
        assert owner.stdout.readline().strip() == "ready", owner.stderr.read()
        assert owner_pid(tmp_path / "Document") == owner.pid
        intruder = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM)
        with pytest.raises(IndexLockedError) as refused:
            intruder.count_documents()
        message = str(refused.value)
        assert f"pid {owner.pid}" in message and "RAGPRESS_DATA_DIR" in message and str(tmp_path) in message
    finally:
        owner.kill()
        owner.wait()
    # A killed owner leaves no stale lock: the kernel drops it with the process.
    assert owner_pid(tmp_path / "Document") is None
    assert EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM).count_documents() == 0


@pytest.mark.integration
def test_a_second_store_object_in_the_same_process_is_refused_too(store, tmp_path):
    store.count_documents()
    with pytest.raises(IndexLockedError):
        EdgeDocumentStore(path=store.path, embedding_dim=DIM).count_documents()


@pytest.mark.integration
@pytest.mark.slow
def test_every_acknowledged_write_survives_a_sigkill_during_ingestion(tmp_path):
    writer = run_child("""
        import sys
        import numpy as np
        from haystack import Document
        from haystack.document_stores.types import DuplicatePolicy
        from ragpress.base.edge_document_store import EdgeDocumentStore
        store = EdgeDocumentStore(path=sys.argv[1], embedding_dim=16)
        rng = np.random.default_rng(0)
        batch = 0
        while True:
            docs = [Document(id=f"b{batch}-{j}", content=f"batch {batch} unit {j}", meta={"batch": batch},
                             embedding=rng.normal(size=16).tolist()) for j in range(50)]
            store.write_documents(docs, policy=DuplicatePolicy.OVERWRITE)
            print(batch, flush=True)  # the acknowledgement: write_documents returned
            batch += 1
    """, str(tmp_path))
    acknowledged = -1
    try:
        while acknowledged < 40:
            line = writer.stdout.readline()
            assert line, f"writer died: {writer.stderr.read()}"
            acknowledged = int(line)
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # no flush, no close: the WAL is all there is
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    recovered = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM)
    acked_ids = [f"b{b}-{j}" for b in range(acknowledged + 1) for j in range(50)]
    assert len(recovered.get_documents_by_id(acked_ids)) == len(acked_ids)
    total = recovered.count_documents()
    assert total >= len(acked_ids)
    assert total % 50 == 0, "a batch is one WAL record: it is recovered whole or not at all"
    assert recovered.count_documents_by_filter({"field": "meta.batch", "operator": "==", "value": 7}) == 50
    recovered.close()


# ---------------------------------------------------------------- index behaviour

@pytest.mark.integration
def test_optimize_builds_hnsw_and_filtered_search_still_finds_exact_neighbours(tmp_path):
    store = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM, use_bm25=False,
                              optimizers_config={"indexing_threshold": 10})
    documents = chunks(3000)
    store.write_documents(documents)
    assert store.info()["indexed_vectors"] == 0, "Edge never indexes by itself"
    assert store.optimize() is True
    info = store.info()
    assert info["indexed_vectors"] == 3000
    assert {"meta.tenant", "meta.collection", "meta.doc_id", "meta.level"} <= set(info["payload_indexes"])
    for i in (5, 1234, 2999):
        assert store.embedding_retrieval(query_embedding=documents[i].embedding, top_k=1)[0].id == f"chunk-{i}"
        tenant = {"field": "meta.tenant", "operator": "==", "value": f"t{i % 3}"}
        hits = store.embedding_retrieval(query_embedding=documents[i].embedding, top_k=5, filters=tenant)
        assert hits[0].id == f"chunk-{i}" and all(h.meta["tenant"] == f"t{i % 3}" for h in hits)
    store.close()


@pytest.mark.integration
def test_bm25_makes_text_searchable_without_a_sparse_embedder(store):
    store.write_documents([
        Document(id="a", content="The Millau Viaduct crosses the Tarn valley", embedding=vectors(1)[0].tolist()),
        Document(id="b", content="PostgreSQL vacuum reclaims dead tuples", embedding=vectors(1, 1)[0].tolist()),
        Document(id="c", content="Python dictionaries preserve insertion order", embedding=vectors(1, 2)[0].tolist()),
    ])
    assert [d.id for d in store.sparse_retrieval(query="viaduct over the Tarn", top_k=1)] == ["a"]
    hybrid = store.hybrid_retrieval(query_embedding=vectors(1, 1)[0].tolist(), query="viaduct", top_k=2)
    assert {d.id for d in hybrid} == {"a", "b"}, "dense finds b, BM25 finds a, fusion keeps both"


@pytest.mark.integration
def test_hybrid_ties_are_broken_by_point_id_so_a_query_always_gets_the_same_order(store):
    near, far = vectors(2, 3)
    store.write_documents([  # dense ranks a over b, BM25 ranks b over a: equal fused scores
        Document(id="a", content="The viaduct crosses the valley", embedding=near.tolist()),
        Document(id="b", content="viaduct viaduct viaduct", embedding=(0.9 * near + 0.1 * far).tolist()),
    ])
    query = {"query_embedding": near.tolist(), "query": "viaduct"}
    by_point_id = sorted(["a", "b"], key=convert_id)

    both = store.hybrid_retrieval(**query, top_k=2)
    assert both[0].score == both[1].score and [d.id for d in both] == by_point_id
    assert [d.id for d in store.hybrid_retrieval(**query, top_k=1)] == by_point_id[:1], "the tie is cut the same way"


@pytest.mark.unit
@pytest.mark.parametrize("bad", [
    {"field": "meta.reviewed", "operator": "==", "value": True},
    {"field": "meta.tenant", "operator": "==", "value": None},
    {"field": "meta.tenant", "operator": "in", "value": "t1"},
    {"field": "meta.position", "operator": ">", "value": "not a date"},
    {"field": "meta.tenant", "operator": "~", "value": "t1"},
    {"operator": "AND", "conditions": []},
    {"meta.tenant": "t1"},
])
def test_filters_qdrant_cannot_express_fail_loudly(bad):
    from ragpress.base.edge_filters import to_edge_filter

    with pytest.raises(FilterError):
        to_edge_filter(bad)


@pytest.mark.unit
def test_construction_checks_its_arguments():
    with pytest.raises(ValueError, match="folder"):
        EdgeDocumentStore(path=":memory:")
    with pytest.raises(ValueError, match="similarity"):
        EdgeDocumentStore(path="/tmp/x", similarity="hamming")


@pytest.mark.integration
def test_write_contract(store):
    assert store.write_documents([]) == 0
    with pytest.raises(ValueError):
        store.write_documents(["not a document"])  # type: ignore[list-item]
    assert store.write_documents(chunks(5) + chunks(5)[:1], policy=DuplicatePolicy.OVERWRITE) == 5
    with pytest.raises(ValueError, match="top_k"):
        store.embedding_retrieval(query_embedding=vectors(1)[0].tolist(), top_k=0)


@pytest.mark.integration
def test_a_store_reopened_with_another_dimension_is_refused(tmp_path):
    first = EdgeDocumentStore(path=str(tmp_path), embedding_dim=DIM)
    first.write_documents(chunks(2))
    first.close()
    with pytest.raises(EdgeStoreError, match="16-d"):
        EdgeDocumentStore(path=str(tmp_path), embedding_dim=384).count_documents()


# ---------------------------------------------------------------- retriever components

@pytest.mark.integration
def test_retriever_runtime_arguments_override_init_values(store):
    store.write_documents(chunks(30))
    query = chunks(30)[4].embedding
    retriever = EdgeEmbeddingRetriever(document_store=store, top_k=3, filters=TENANT_T1)
    assert all(d.meta["tenant"] == "t1" for d in retriever.run(query_embedding=query)["documents"])
    assert len(retriever.run(query_embedding=query)["documents"]) == 3
    overridden = retriever.run(query_embedding=query, top_k=5, filters={"field": "meta.tenant", "operator": "==",
                                                                        "value": "t2"})["documents"]
    assert len(overridden) == 5 and all(d.meta["tenant"] == "t2" for d in overridden)
    merging = EdgeEmbeddingRetriever(document_store=store, top_k=10, filters=TENANT_T1, filter_policy="merge")
    narrowed = merging.run(query_embedding=query, filters={"field": "meta.doc_id", "operator": "==", "value": "d1"})
    assert {(d.meta["tenant"], d.meta["doc_id"]) for d in narrowed["documents"]} == {("t1", "d1")}
    assert retriever.run(query_embedding=query, return_embedding=True)["documents"][0].embedding is not None
    assert retriever.run(query_embedding=query)["documents"][0].embedding is None


@pytest.mark.integration
@pytest.mark.parametrize("cls,extra", [
    (EdgeEmbeddingRetriever, {"scale_score": True, "score_threshold": 0.1}),
    (EdgeSparseEmbeddingRetriever, {}),
    (EdgeHybridRetriever, {"rrf_k": 30, "prefetch_k": 40}),
])
def test_retrievers_round_trip_through_to_dict(tmp_path, cls, extra):
    store = EdgeDocumentStore(path=str(tmp_path), index="units", embedding_dim=DIM,
                              optimizers_config={"indexing_threshold": 20000})
    retriever = cls(document_store=store, top_k=4, filters=TENANT_T1, filter_policy="merge", **extra)
    data = retriever.to_dict()
    assert data["type"] == f"ragpress.indexers.edge_retrievers.{cls.__name__}"
    clone = cls.from_dict(data)
    assert clone.to_dict() == data
    assert clone.document_store.to_dict() == store.to_dict()


@pytest.mark.integration
def test_a_retrieval_pipeline_survives_yaml_and_needs_its_module_allowlisted(tmp_path):
    store = EdgeDocumentStore(path=str(tmp_path), index="units", embedding_dim=DIM)
    # distinct lengths give distinct BM25 scores: tied scores may come back in another order after reopening
    documents = [replace(d, content=f"{d.content}{' more' * i}") for i, d in enumerate(chunks(30))]
    store.write_documents(documents)
    pipeline = Pipeline()
    pipeline.add_component("retriever", EdgeHybridRetriever(document_store=store, top_k=3, filters=TENANT_T1))
    query = {"query_embedding": chunks(30)[4].embedding, "query": "bridges"}
    before = [d.id for d in pipeline.run({"retriever": query})["retriever"]["documents"]]
    text = pipeline.dumps()
    store.close()  # one owner per folder: the loaded pipeline's store opens the same index

    with pytest.raises(DeserializationError):
        Pipeline.loads(text)  # Haystack 3.4 imports nothing outside its allowlist
    loaded = Pipeline.loads(text, allowed_modules=["ragpress"])
    after = [d.id for d in loaded.run({"retriever": query})["retriever"]["documents"]]
    assert after == before and len(after) == 3
    loaded.get_component("retriever").document_store.close()
