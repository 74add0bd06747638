"""The one document store a process uses, built from settings, never from a user's YAML.

Pipeline YAML names no store: a store in YAML could point at another index or carry
``recreate_index: true``, which wipes the collection on load. Components that read or write the index ask
this module for the process's store, so the embedded and distributed modes differ only in settings.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from haystack import Document
from haystack.utils import Secret
from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore
from portalocker.exceptions import LockException

from ragpress.base import schema
from ragpress.base.settings import Settings, get_settings

INDEX_NAME = "ragpress_units"


class IndexUnavailable(RuntimeError):
    """The index cannot be opened (locked by another process, server down); the message says what to do."""


class _Serialized:
    """Serializes calls into an embedded engine, which is not safe to use from several threads at once."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked

    def close(self) -> None:
        """Close the engine once the call in progress returns; it reopens on next use."""
        with self._lock:
            self._store.close()


class _QdrantStore(QdrantDocumentStore):
    """qdrant-haystack's store with the ``embedding_retrieval`` the Edge store has: qdrant-haystack searches
    publicly only through its retriever component."""

    def embedding_retrieval(self, query_embedding: list[float], filters: dict[str, Any] | None = None,
                            top_k: int = 10) -> list[Document]:
        retriever = QdrantEmbeddingRetriever(document_store=self, top_k=top_k)
        return retriever.run(query_embedding=query_embedding, filters=filters)["documents"]


_store: Any = None
_store_lock = threading.Lock()


def embedding_dim(settings: Settings) -> int:
    from ragpress.base.model_loading import sentence_transformer

    dim = sentence_transformer(settings.embedder).get_embedding_dimension()
    if not dim:
        raise IndexUnavailable(f"Embedder '{settings.embedder}' does not report its embedding dimension.")
    return int(dim)


def make_document_store(settings: Settings) -> Any:
    common: dict[str, Any] = {
        "index": INDEX_NAME,
        "embedding_dim": embedding_dim(settings),
        "progress_bar": False,
        "recreate_index": False,
    }
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key
        secret = Secret.from_token(api_key.get_secret_value()) if api_key else None
        store = _QdrantStore(url=settings.qdrant_url, api_key=secret,
                             payload_fields_to_index=list(schema.INDEXED_FIELDS), **common)
        _open(store, f"the Qdrant server at {settings.qdrant_url}")
        return store
    if settings.embedded_engine == "edge":
        return _Serialized(_open_edge(settings, common["embedding_dim"]))
    path = settings.embedded_index_path
    path.mkdir(parents=True, exist_ok=True)
    store = _QdrantStore(path=str(path), force_disable_check_same_thread=True, **common)
    _open(store, f"the embedded index at {path}")
    return _Serialized(store)


def _open_edge(settings: Settings, dim: int) -> Any:
    from ragpress.base.edge_document_store import EdgeDocumentStore
    from ragpress.base.edge_lock import IndexLockedError

    try:
        store = EdgeDocumentStore(path=str(settings.data_path / "edge"), index=INDEX_NAME, embedding_dim=dim,
                                  payload_fields_to_index=list(schema.INDEXED_FIELDS))
        store.count_documents()
    except IndexLockedError as exc:
        raise IndexUnavailable(f"{exc} (one process owns an embedded index; send work to it through its API)") from exc
    return store


def _open(store: Any, where: str) -> None:
    try:
        store.count_documents()
    except Exception as exc:
        # qdrant-client's local mode raises a RuntimeError while handling portalocker's refusal of its folder lock.
        if isinstance(exc.__context__, LockException):
            raise IndexUnavailable(
                f"{where} is owned by another process. Stop it (one process owns an embedded index), send "
                "work to it through its API, or point RAGPRESS_DATA_DIR elsewhere."
            ) from exc
        raise IndexUnavailable(f"Cannot open {where}: {exc}") from exc


def shared_store(settings: Settings | None = None) -> Any:
    """The process's document store, opened on first use."""
    global _store
    with _store_lock:
        if _store is None:
            _store = make_document_store(settings or get_settings())
        return _store


def scope_filters(tenant: str, collection: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Filters that confine a read or write to one tenant's collection, ANDed with any user filters."""
    conditions: list[dict[str, Any]] = [
        {"field": f"meta.{schema.TENANT}", "operator": "==", "value": tenant},
        {"field": f"meta.{schema.COLLECTION}", "operator": "==", "value": collection},
    ]
    if extra:
        conditions.append(extra)
    return {"operator": "AND", "conditions": conditions}


def dense_search(store: Any, embedding: list[float], filters: dict[str, Any], top_k: int) -> list[Document]:
    """The ``top_k`` units nearest ``embedding`` among those ``filters`` match, in any store this module makes."""
    return store.embedding_retrieval(query_embedding=embedding, filters=filters, top_k=top_k)
