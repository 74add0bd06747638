"""The Edge store and qdrant-haystack's store (qdrant-client local mode) agree, operation by operation.

In the spirit of qdrant-client's congruence tests: the same documents go into both stores, every operation
runs on both, and the results must match: the same ids in the same order (up to score ties), the same scores,
payloads and vectors. Local mode searches exactly and the Edge store searches exactly below its indexing
threshold, so any difference is a translation bug (ids, payload layout, filters, policies), not approximation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from haystack import Document
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

from ragpress.base.edge_document_store import EdgeDocumentStore
from ragpress.base.schema import unit_id

pytestmark = pytest.mark.integration

DIM = 32
N_DOCS = 300
WORDS = ("viaduct river bridge tower cable steel concrete span deck pier arch load wind traffic toll "
         "opening engineer france valley height record").split()

FILTERS: dict[str, dict[str, Any]] = {
    "tenant ==": {"field": "meta.tenant", "operator": "==", "value": "t1"},
    "scope AND": {"operator": "AND", "conditions": [
        {"field": "meta.tenant", "operator": "==", "value": "t1"},
        {"field": "meta.collection", "operator": "==", "value": "c0"}]},
    "OR of level and range": {"operator": "OR", "conditions": [
        {"field": "meta.level", "operator": "==", "value": "slice"},
        {"field": "meta.position", "operator": ">=", "value": 7}]},
    "NOT": {"operator": "NOT", "conditions": [{"field": "meta.level", "operator": "==", "value": "chunk"}]},
    "!= keeps docs lacking the field": {"field": "meta.position", "operator": "!=", "value": 3},
    "in": {"field": "meta.doc_id", "operator": "in", "value": ["doc-1", "doc-4", "doc-9"]},
    "not in": {"field": "meta.level", "operator": "not in", "value": ["chunk", "document"]},
    ">": {"field": "meta.position", "operator": ">", "value": 5},
    "<": {"field": "meta.position", "operator": "<", "value": 2},
    "<= float": {"field": "meta.quality", "operator": "<=", "value": 0.25},
    "datetime >=": {"field": "meta.created", "operator": ">=", "value": "2024-06-01T00:00:00"},
    "id ==": {"field": "id", "operator": "==", "value": "custom id 7"},
    "nested": {"operator": "AND", "conditions": [
        {"field": "meta.tenant", "operator": "in", "value": ["t0", "t2"]},
        {"operator": "OR", "conditions": [
            {"field": "meta.level", "operator": "==", "value": "chunk"},
            {"operator": "NOT", "conditions": [{"field": "meta.position", "operator": "<", "value": 4}]}]}]},
}


def make_documents(n: int = N_DOCS, seed: int = 7) -> list[Document]:
    """Chunks with ragpress's meta, random unit vectors and random sparse vectors; some odd ids and gaps."""
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).normal(size=(n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    documents = []
    for i in range(n):
        tenant, collection, doc_id = f"t{i % 3}", f"c{i % 2}", f"doc-{i % 25}"
        meta: dict[str, Any] = {
            "tenant": tenant, "collection": collection, "doc_id": doc_id,
            "level": ("document", "chunk", "slice")[i % 3 if i % 7 else 1],
            "quality": round(rng.random(), 3), "reviewed": i % 4 == 0,
            "created": f"2024-{1 + i % 12:02d}-15T12:00:00",
        }
        if i % 10:  # every tenth unit lacks a position: != and not in must still match it
            meta["position"] = i % 11
        ident = f"custom id {i}" if i % 50 == 7 else unit_id(tenant, collection, doc_id, "h", "chunk", i)
        indices = sorted(rng.sample(range(40), 5))
        documents.append(Document(
            id=ident, content=" ".join(rng.choices(WORDS, k=12)), meta=meta, embedding=vectors[i].tolist(),
            sparse_embedding=SparseEmbedding(indices=indices, values=[round(rng.random() + 0.1, 3) for _ in indices])))
    return documents


def open_pair(path: str) -> tuple[EdgeDocumentStore, QdrantDocumentStore]:
    edge = EdgeDocumentStore(path=path, index="congruence", embedding_dim=DIM, use_bm25=False)
    local = QdrantDocumentStore(location=":memory:", index="congruence", embedding_dim=DIM,
                                use_sparse_embeddings=True, sparse_idf=True, progress_bar=False)
    return edge, local


@pytest.fixture()
def pair(tmp_path) -> Iterator[tuple[EdgeDocumentStore, QdrantDocumentStore]]:
    edge, local = open_pair(str(tmp_path / "edge"))
    for store in (edge, local):
        store.write_documents(make_documents())
    yield edge, local
    edge.close()
    local.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Iterator[tuple[EdgeDocumentStore, QdrantDocumentStore]]:
    edge, local = open_pair(str(tmp_path_factory.mktemp("congruence") / "edge"))
    for store in (edge, local):
        store.write_documents(make_documents())
    yield edge, local
    edge.close()
    local.close()


# ---------------------------------------------------------------- comparison helpers

def same_document(a: Document, b: Document, where: str) -> None:
    assert a.id == b.id, where
    assert a.content == b.content, where
    assert a.meta == b.meta, where
    if a.score is None or b.score is None:
        assert a.score == b.score, where
    else:
        assert a.score == pytest.approx(b.score, rel=1e-4, abs=1e-5), where
    assert (a.embedding is None) == (b.embedding is None), where
    if a.embedding is not None:
        assert np.allclose(a.embedding, b.embedding, atol=1e-4), where


def same_ranking(edge_docs: list[Document], local_docs: list[Document], where: str) -> None:
    """Same length, same scores rank by rank, and the same ids within each group of tied scores."""
    assert len(edge_docs) == len(local_docs), where
    for rank, (a, b) in enumerate(zip(edge_docs, local_docs, strict=True)):
        assert a.score == pytest.approx(b.score, rel=1e-4, abs=1e-5), f"{where} rank {rank}"
    def ties(docs: list[Document]) -> dict[float, set[str]]:
        groups: dict[float, set[str]] = {}
        for d in docs:
            groups.setdefault(round(d.score or 0.0, 4), set()).add(d.id)
        return groups
    assert ties(edge_docs) == ties(local_docs), where
    by_id = {d.id: d for d in local_docs}
    for a in edge_docs:
        same_document(a, by_id[a.id], where)


def same_listing(edge_docs: list[Document], local_docs: list[Document], where: str) -> None:
    # Both engines scroll in point-id order; compare as id-keyed maps so a layout difference shows per field.
    assert [d.id for d in edge_docs] == [d.id for d in local_docs], where
    for a, b in zip(edge_docs, local_docs, strict=True):
        same_document(a, b, where)


def on_both(pair: tuple[EdgeDocumentStore, QdrantDocumentStore], operation: Callable[[Any], Any]) -> tuple:
    return operation(pair[0]), operation(pair[1])


def query_vector(seed: int) -> list[float]:
    vector = np.random.default_rng(1000 + seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def dense(store: Any, vector: list[float], filters: dict | None = None, top_k: int = 10) -> list[Document]:
    if isinstance(store, EdgeDocumentStore):
        return store.embedding_retrieval(query_embedding=vector, filters=filters, top_k=top_k)
    return store._query_by_embedding(query_embedding=vector, filters=filters, top_k=top_k)


# ---------------------------------------------------------------- reads

def test_both_stores_hold_the_same_documents_with_the_same_payload_and_vectors(loaded):
    edge_docs, local_docs = on_both(loaded, lambda s: s.filter_documents())
    assert len(edge_docs) == N_DOCS
    same_listing(edge_docs, local_docs, "all documents")


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_select_the_same_documents(loaded, name):
    edge_docs, local_docs = on_both(loaded, lambda s: s.filter_documents(FILTERS[name]))
    assert edge_docs, f"filter '{name}' should match something in the fixture"
    same_listing(edge_docs, local_docs, name)


@pytest.mark.parametrize("name", list(FILTERS))
def test_counts_by_filter_agree(loaded, name):
    edge_count, local_count = on_both(loaded, lambda s: s.count_documents_by_filter(FILTERS[name]))
    assert edge_count == local_count


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", [None, "tenant ==", "scope AND", "nested", "!= keeps docs lacking the field"])
def test_dense_retrieval_returns_the_same_ranking(loaded, seed, name):
    filters = FILTERS[name] if name else None
    edge_docs, local_docs = on_both(loaded, lambda s: dense(s, query_vector(seed), filters))
    same_ranking(edge_docs, local_docs, f"dense seed={seed} filter={name}")


def test_documents_with_arbitrary_string_ids_map_to_the_same_points(loaded):
    ids = ["custom id 7", "custom id 57", "not stored"]
    edge_docs, local_docs = on_both(loaded, lambda s: s.get_documents_by_id(ids))
    assert sorted(d.id for d in edge_docs) == ["custom id 57", "custom id 7"]
    same_listing(sorted(edge_docs, key=lambda d: d.id), sorted(local_docs, key=lambda d: d.id), "by id")


@pytest.mark.parametrize("seed", range(3))
def test_sparse_retrieval_returns_the_same_ranking(loaded, seed):
    rng = random.Random(seed)
    query = SparseEmbedding(indices=sorted(rng.sample(range(40), 3)), values=[1.0, 0.5, 0.25])
    filters = FILTERS["scope AND"] if seed == 2 else None
    edge_docs = loaded[0].sparse_retrieval(query_sparse_embedding=query, filters=filters, top_k=10)
    local_docs = loaded[1]._query_by_sparse(query_sparse_embedding=query, filters=filters, top_k=10)
    same_ranking(edge_docs, local_docs, f"sparse seed={seed}")


@pytest.mark.parametrize("seed", range(3))
def test_hybrid_retrieval_fuses_to_the_same_ranking(loaded, seed):
    # Both sides fetch 10 candidates per vector (local mode's prefetch default) and fuse with RRF k=60.
    query = SparseEmbedding(indices=[seed, seed + 3, seed + 11], values=[1.0, 1.0, 1.0])
    vector = query_vector(seed)
    edge_docs = loaded[0].hybrid_retrieval(query_embedding=vector, query_sparse_embedding=query, top_k=8,
                                           rrf_k=60, prefetch_k=10)
    local_docs = loaded[1]._query_hybrid(query_embedding=vector, query_sparse_embedding=query, top_k=8, rrf_k=60)
    same_ranking(edge_docs, local_docs, f"hybrid seed={seed}")


# ---------------------------------------------------------------- writes

def test_delete_documents_removes_the_same_points(pair):
    victims = [d.id for d in make_documents()[::9]] + ["never written"]
    on_both(pair, lambda s: s.delete_documents(victims))
    counts = on_both(pair, lambda s: s.count_documents())
    assert counts[0] == counts[1] == N_DOCS - len(victims) + 1
    same_listing(*on_both(pair, lambda s: s.filter_documents()), "after delete")


@pytest.mark.parametrize("name", ["tenant ==", "nested", "not in"])
def test_delete_by_filter_removes_and_reports_the_same_documents(pair, name):
    deleted = on_both(pair, lambda s: s.delete_by_filter(FILTERS[name]))
    assert deleted[0] == deleted[1] > 0
    assert on_both(pair, lambda s: s.count_documents_by_filter(FILTERS[name])) == (0, 0)
    same_listing(*on_both(pair, lambda s: s.filter_documents()), f"after delete_by_filter {name}")
    same_ranking(*on_both(pair, lambda s: dense(s, query_vector(0))), "search after delete_by_filter")


def test_overwrite_replaces_content_meta_and_vector_in_both(pair):
    changed = [Document(id=d.id, content="rewritten " + (d.content or ""), meta={**d.meta, "level": "chunk"},
                        embedding=query_vector(99), sparse_embedding=d.sparse_embedding)
               for d in make_documents()[:20]]
    written = on_both(pair, lambda s: s.write_documents(changed, policy=DuplicatePolicy.OVERWRITE))
    assert written == (20, 20)
    assert on_both(pair, lambda s: s.count_documents()) == (N_DOCS, N_DOCS)
    same_listing(*on_both(pair, lambda s: s.filter_documents()), "after overwrite")
    edge_top, local_top = on_both(pair, lambda s: dense(s, query_vector(99), top_k=20))
    assert {d.id for d in edge_top} == {d.id for d in changed}
    same_ranking(edge_top, local_top, "the overwritten vector is what is searched")


def test_skip_writes_only_new_documents_in_both(pair):
    fresh = make_documents(N_DOCS + 5, seed=7)[N_DOCS - 5:]  # 5 existing ids, 5 new ones
    assert on_both(pair, lambda s: s.write_documents(fresh, policy=DuplicatePolicy.SKIP)) == (5, 5)
    same_listing(*on_both(pair, lambda s: s.filter_documents()), "after skip")


def test_fail_refuses_existing_ids_in_both(pair):
    existing = make_documents()[:2]
    for store in pair:
        with pytest.raises(DuplicateDocumentError):
            store.write_documents(existing, policy=DuplicatePolicy.FAIL)
    assert on_both(pair, lambda s: s.count_documents()) == (N_DOCS, N_DOCS)


def test_an_empty_filter_deletes_nothing_in_both(pair):
    assert on_both(pair, lambda s: s.delete_by_filter({})) == (0, 0)
    assert on_both(pair, lambda s: s.count_documents()) == (N_DOCS, N_DOCS)


@pytest.mark.parametrize("policy", [DuplicatePolicy.NONE, DuplicatePolicy.OVERWRITE, DuplicatePolicy.SKIP])
def test_repeated_ids_in_one_call_resolve_the_same_way_in_both(pair, policy):
    base = make_documents()[0]
    copies = [Document(id=f"repeated-{policy.value}", content=f"copy {n}", meta=base.meta, embedding=base.embedding,
                       sparse_embedding=base.sparse_embedding) for n in range(3)]
    on_both(pair, lambda s: s.write_documents(copies, policy=policy))
    edge_docs, local_docs = on_both(pair, lambda s: s.get_documents_by_id([copies[0].id]))
    assert edge_docs[0].content == ("copy 0" if policy == DuplicatePolicy.SKIP else "copy 2")
    same_listing(edge_docs, local_docs, f"repeated ids under {policy.value}")
