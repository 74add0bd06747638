"""Dense (or hybrid dense + BM25) retrieval over the process's index, confined to the caller's tenant and collection."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.document_stores import dense_search, scope_filters, shared_store
from ragpress.base.roles import Role

logger = logging.getLogger(__name__)


def validate_scope(scope: schema.Scope) -> tuple[str, str]:
    """The tenant and collection of a scope the server made; anything else (a mapping from a pipeline's
    wiring or a request) is refused, so no query reads outside its caller's collection."""
    if not isinstance(scope, schema.Scope):
        raise ValueError("scope must be the server's Scope for this query; it cannot come from a pipeline or a "
                         "request.")
    return scope.tenant, scope.collection


@component
class ScopedEmbeddingRetriever:
    """Finds the ``top_k`` units nearest a query embedding within one tenant's collection.

    ``scope`` is set by the server from the caller's credentials and cannot be widened by user filters,
    which are ANDed with it. ``level`` restricts the search to one scale of the multi-scale index and
    ``strategy`` to the units one chunking strategy embedded (a collection can hold several). ``hybrid`` fuses
    the dense ranking with the index's BM25 ranking of the query text (Reciprocal Rank Fusion); it needs an
    index with sparse vectors (the embedded Edge engine writes them for every unit); over any other index it
    searches dense only, with a warning.

    Usage:
        >>> retriever = ScopedEmbeddingRetriever(top_k=5)
        >>> retriever.run(query_embedding=vec, scope=Scope("default", "docs"))
    """

    role: ClassVar[Role] = Role.RETRIEVER

    def __init__(self, top_k: int = 10, level: str | None = "chunk", strategy: str | None = None,
                 hybrid: bool = False) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1.")
        if level is not None and level not in schema.LEVELS:
            raise ValueError(f"level must be one of {schema.LEVELS} or null.")
        if strategy is not None and not strategy:
            raise ValueError("strategy must name a chunking strategy (fixed, late, situated) or be null.")
        self.top_k = top_k
        self.level = level
        self.strategy = strategy
        self.hybrid = hybrid

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, top_k=self.top_k, level=self.level, strategy=self.strategy, hybrid=self.hybrid)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScopedEmbeddingRetriever:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], timing_ms=float)
    def run(
        self,
        *,
        query_embedding: list[float],
        scope: schema.Scope,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        query: str | None = None,
    ) -> dict[str, Any]:
        """
        :param query_embedding: the query's vector.
        :param scope: the server's scope for this query; the search never leaves it.
        :param filters: the caller's filters, ANDed with the scope, level and strategy.
        :param top_k: overrides the init value for this run.
        :param query: the query text, for the BM25 half of a hybrid search.
        :returns: ``documents``, best first, and ``timing_ms``.
        """
        started = time.perf_counter()
        tenant, collection = validate_scope(scope)
        conditions = [c for c in (filters, self._field_filter(schema.LEVEL, self.level),
                                  self._field_filter(schema.STRATEGY, self.strategy)) if c]
        extra = {"operator": "AND", "conditions": conditions} if conditions else None
        where, store, k = scope_filters(tenant, collection, extra), shared_store(), top_k or self.top_k
        if self.hybrid:
            documents = self._hybrid(store, query_embedding, query, where, k)
        else:
            documents = dense_search(store, query_embedding, where, k)
        return {"documents": documents, "timing_ms": (time.perf_counter() - started) * 1000}

    @staticmethod
    def _hybrid(store: Any, embedding: list[float], query: str | None, where: dict[str, Any],
                top_k: int) -> list[Document]:
        if not query:
            raise ValueError("hybrid retrieval needs the query text (the server passes it as `query`).")
        if not hasattr(store, "hybrid_retrieval"):
            # A Qdrant server or qdrant-client's local mode holds no BM25 vectors: the default pipeline must still
            # answer there, by its dense half.
            _warn_dense_only(type(store).__name__)
            return dense_search(store, embedding, where, top_k)
        return store.hybrid_retrieval(query_embedding=embedding, query=query, filters=where, top_k=top_k)

    @staticmethod
    def _field_filter(field: str, value: str | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"field": f"meta.{field}", "operator": "==", "value": value}


@functools.cache
def _warn_dense_only(store_type: str) -> None:
    logger.warning("hybrid retrieval needs the BM25 vectors only the embedded Edge engine writes; this index "
                   "(%s) is searched dense only", store_type)
