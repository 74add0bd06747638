"""Dense retrieval over the process's index, always confined to the caller's tenant and collection."""

from __future__ import annotations

import time
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress import schema
from ragpress.document_stores import dense_search, scope_filters, shared_store


def validate_scope(scope: dict[str, str]) -> tuple[str, str]:
    tenant, collection = scope.get(schema.TENANT), scope.get(schema.COLLECTION)
    if not tenant or not collection:
        raise ValueError("scope must name a tenant and a collection; the server sets it for every query.")
    return tenant, collection


@component
class ScopedEmbeddingRetriever:
    """Finds the ``top_k`` units nearest a query embedding within one tenant's collection.

    ``scope`` is set by the server from the caller's credentials and cannot be widened by user filters,
    which are ANDed with it. ``level`` restricts the search to one scale of the multi-scale index.

    Usage:
        >>> retriever = ScopedEmbeddingRetriever(top_k=5)
        >>> retriever.run(query_embedding=vec, scope={"tenant": "default", "collection": "docs"})
    """

    def __init__(self, top_k: int = 10, level: str | None = "chunk") -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1.")
        if level is not None and level not in schema.LEVELS:
            raise ValueError(f"level must be one of {schema.LEVELS} or null.")
        self.top_k = top_k
        self.level = level

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, top_k=self.top_k, level=self.level)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScopedEmbeddingRetriever:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], timing_ms=float)
    def run(
        self,
        query_embedding: list[float],
        scope: dict[str, str],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        tenant, collection = validate_scope(scope)
        conditions = [c for c in (filters, self._level_filter()) if c]
        extra = {"operator": "AND", "conditions": conditions} if conditions else None
        documents = dense_search(shared_store(), query_embedding, scope_filters(tenant, collection, extra),
                                 top_k or self.top_k)
        return {"documents": documents, "timing_ms": (time.perf_counter() - started) * 1000}

    def _level_filter(self) -> dict[str, Any] | None:
        if self.level is None:
            return None
        return {"field": f"meta.{schema.LEVEL}", "operator": "==", "value": self.level}
