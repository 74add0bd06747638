"""Haystack retriever components over ``EdgeDocumentStore``: dense, sparse (or BM25 text) and hybrid (RRF).

They follow the qdrant-haystack retrievers' contract, so a pipeline swaps one for the other by class name:
init parameters are the YAML, ``run()`` arguments override them, and filters combine by ``filter_policy``
(``replace``: runtime filters replace init filters; ``merge``: both must hold).

Usage:
    >>> retriever = EdgeEmbeddingRetriever(document_store=store, top_k=5)
    >>> retriever.run(query_embedding=vector, filters={"field": "meta.tenant", "operator": "==", "value": "t1"})
"""

from __future__ import annotations

from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy

from ragpress.base.edge_document_store import RRF_K, EdgeDocumentStore
from ragpress.base.roles import Role


class _EdgeRetriever:
    """Shared init validation and (de)serialization; the store is serialized inline, as Haystack's are."""

    role: ClassVar[Role] = Role.RETRIEVER

    def __init__(
        self,
        document_store: EdgeDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        return_embedding: bool = False,
    ) -> None:
        if not isinstance(document_store, EdgeDocumentStore):
            raise ValueError("document_store must be an EdgeDocumentStore.")
        if top_k < 1:
            raise ValueError("top_k must be at least 1.")
        self.document_store = document_store
        self.filters = filters
        self.top_k = top_k
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy
        self.return_embedding = return_embedding

    def _params(self) -> dict[str, Any]:
        return {"document_store": self.document_store.to_dict(), "filters": self.filters, "top_k": self.top_k,
                "filter_policy": self.filter_policy.value, "return_embedding": self.return_embedding}

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._params())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}  # never mutate the caller's
        params = data["init_parameters"]
        store = params.get("document_store")
        if isinstance(store, dict):
            # Only ever an EdgeDocumentStore: the nested type name is checked, never imported from the YAML.
            if not str(store.get("type", "")).endswith(".EdgeDocumentStore"):
                raise ValueError(f"{cls.__name__} needs an EdgeDocumentStore, got {store.get('type')!r}.")
            params["document_store"] = EdgeDocumentStore.from_dict(store)
        return default_from_dict(cls, data)

    def _run_args(self, filters: dict[str, Any] | None, top_k: int | None,
                  return_embedding: bool | None) -> dict[str, Any]:
        return {"filters": apply_filter_policy(self.filter_policy, self.filters, filters),
                "top_k": top_k or self.top_k,
                "return_embedding": self.return_embedding if return_embedding is None else return_embedding}


@component
class EdgeEmbeddingRetriever(_EdgeRetriever):
    """The ``top_k`` documents nearest a dense query embedding (HNSW after ``optimize()``)."""

    def __init__(
        self,
        document_store: EdgeDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        scale_score: bool = False,
        return_embedding: bool = False,
        score_threshold: float | None = None,
    ) -> None:
        # Explicit base call: @component rebuilds the class, which breaks zero-argument super().
        _EdgeRetriever.__init__(self, document_store, filters, top_k, filter_policy, return_embedding)
        self.scale_score = scale_score
        self.score_threshold = score_threshold

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._params(), scale_score=self.scale_score,
                               score_threshold=self.score_threshold)

    @component.output_types(documents=list[Document])
    def run(
        self,
        *,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        scale_score: bool | None = None,
        return_embedding: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        documents = self.document_store.embedding_retrieval(
            query_embedding=query_embedding, **self._run_args(filters, top_k, return_embedding),
            scale_score=self.scale_score if scale_score is None else scale_score,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold)
        return {"documents": documents}


@component
class EdgeSparseEmbeddingRetriever(_EdgeRetriever):
    """The ``top_k`` best sparse matches for a sparse query embedding, or for query text via the store's BM25."""

    @component.output_types(documents=list[Document])
    def run(
        self,
        *,
        query_sparse_embedding: SparseEmbedding | None = None,
        query: str | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        documents = self.document_store.sparse_retrieval(
            query_sparse_embedding=query_sparse_embedding, query=query,
            **self._run_args(filters, top_k, return_embedding))
        return {"documents": documents}


@component
class EdgeHybridRetriever(_EdgeRetriever):
    """Dense and sparse candidates fused by Reciprocal Rank Fusion (``rrf_k``, 60 by default) inside the engine.

    The sparse side is ``query_sparse_embedding`` if given, else the store's BM25 over ``query`` text.
    """

    def __init__(
        self,
        document_store: EdgeDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        return_embedding: bool = False,
        rrf_k: int = RRF_K,
        prefetch_k: int | None = None,
    ) -> None:
        # Explicit base call: @component rebuilds the class, which breaks zero-argument super().
        _EdgeRetriever.__init__(self, document_store, filters, top_k, filter_policy, return_embedding)
        if rrf_k < 1:
            raise ValueError("rrf_k must be at least 1.")
        self.rrf_k = rrf_k
        self.prefetch_k = prefetch_k

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._params(), rrf_k=self.rrf_k, prefetch_k=self.prefetch_k)

    @component.output_types(documents=list[Document])
    def run(
        self,
        *,
        query_embedding: list[float],
        query_sparse_embedding: SparseEmbedding | None = None,
        query: str | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        return_embedding: bool | None = None,
    ) -> dict[str, list[Document]]:
        documents = self.document_store.hybrid_retrieval(
            query_embedding=query_embedding, query_sparse_embedding=query_sparse_embedding, query=query,
            **self._run_args(filters, top_k, return_embedding), rrf_k=self.rrf_k, prefetch_k=self.prefetch_k)
        return {"documents": documents}
