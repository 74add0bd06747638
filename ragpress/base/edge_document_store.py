"""A Haystack document store over Qdrant Edge: Qdrant's own engine (HNSW, payload indexes, WAL) in-process.

It is a drop-in for qdrant-haystack's ``QdrantDocumentStore`` where no server runs:

- the same point ids (``convert_id`` of qdrant-haystack), the same payload layout (``Document.to_dict`` without
  vectors, so ``meta.tenant`` is a payload path in both) and the same filter semantics, so documents written by
  one read back identically from the other;
- ``count_documents``, ``filter_documents``, ``write_documents`` (NONE/SKIP/OVERWRITE/FAIL),
  ``delete_documents``, ``delete_by_filter``, ``count_documents_by_filter``, ``get_documents_by_id``;
- dense, sparse (a Document's ``sparse_embedding``, or Edge's built-in BM25 over its content) and hybrid
  (Reciprocal Rank Fusion) retrieval;
- ``optimize()`` builds the HNSW graphs and merges segments; Edge never does it by itself, so call it after a
  large ingest (until then search is exact and slower);
- one process owns an index folder: a second one gets ``IndexLockedError`` naming the owner's pid;
- every payload is checked before it is written (``ragpress.base.edge_points``): a document that breaks a rule
  is refused with ``InvalidPayloadError`` naming it, before anything of the call is written. A point whose
  payload still cannot be read is skipped and logged, never a failed query.

The point layout is ``ragpress.base.edge_points``'s, the shard's configuration ``ragpress.base.edge_shard``'s.

Usage:
    >>> store = EdgeDocumentStore(path="/var/lib/ragpress/edge", embedding_dim=384)
    >>> store.write_documents(documents, policy=DuplicatePolicy.OVERWRITE)
    >>> store.optimize()
    >>> store.embedding_retrieval(query_embedding=vector, filters={...}, top_k=10)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from haystack import Document, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.document_stores.qdrant.converters import convert_id

from ragpress.base.edge_filters import to_edge_filter
from ragpress.base.edge_lock import FolderLock
from ragpress.base.edge_points import DENSE, SPARSE, checked_payload, one_per_id, scaled, to_document, to_point
from ragpress.base.edge_points import InvalidPayloadError as InvalidPayloadError  # the store's errors, re-exported
from ragpress.base.edge_shard import DISTANCES, load_or_create, shard_config
from ragpress.base.edge_shard import EdgeStoreError as EdgeStoreError
from ragpress.base.schema import INDEXED_FIELDS as DEFAULT_INDEXED_FIELDS

logger = logging.getLogger(__name__)

RRF_K = 60


def point_key(point_id: Any) -> str:
    """A point id the engine returns, in ``convert_id``'s form (32 hex digits)."""
    return getattr(point_id, "hex", str(point_id))


class EdgeDocumentStore:
    """Documents with dense and sparse vectors in one Qdrant Edge shard at ``<path>/<index>``."""

    def __init__(
        self,
        path: str,
        index: str = "Document",
        embedding_dim: int = 768,
        similarity: str = "cosine",
        use_bm25: bool = True,
        return_embedding: bool = False,
        payload_fields_to_index: list[dict[str, Any]] | None = None,
        hnsw_config: dict[str, int] | None = None,
        optimizers_config: dict[str, Any] | None = None,
        write_batch_size: int = 256,
        scroll_size: int = 10_000,
    ) -> None:
        """
        :param path: Folder holding the index (created on first use). Never ``:memory:``: Edge is on-disk only.
        :param index: Subfolder (Qdrant "collection") inside ``path``.
        :param embedding_dim: Dense vector size; fixed once the index exists.
        :param similarity: ``cosine``, ``dot_product`` or ``l2``.
        :param use_bm25: Give Documents without a ``sparse_embedding`` one from Edge's BM25 over their content,
            so sparse and hybrid retrieval work from text alone.
        :param return_embedding: Whether retrieval returns the documents' vectors.
        :param payload_fields_to_index: ``[{"field_name": "meta.x", "field_schema": "keyword" | {"type":
            "keyword", "is_tenant": true}}]`` (qdrant-haystack's format); defaults to ragpress's scope fields.
        :param hnsw_config: ``{"m": 16, "ef_construct": 100, "full_scan_threshold": 10000}`` overrides.
        :param optimizers_config: ``EdgeOptimizersConfig`` fields, e.g. ``{"indexing_threshold": 10000}`` (KB of
            vectors below which a segment stays unindexed and is searched exactly).
        :param write_batch_size: Points per upsert; each upsert is one WAL record.
        :param scroll_size: Points per page when listing documents.
        """
        if similarity not in DISTANCES:
            raise ValueError(f"similarity must be one of {sorted(DISTANCES)}.")
        if not path or path == ":memory:":
            raise ValueError("EdgeDocumentStore needs a folder path; Qdrant Edge has no in-memory mode.")
        self.path = path
        self.index = index
        self.embedding_dim = embedding_dim
        self.similarity = similarity
        self.use_bm25 = use_bm25
        self.return_embedding = return_embedding
        self.payload_fields_to_index = (
            list(DEFAULT_INDEXED_FIELDS) if payload_fields_to_index is None else payload_fields_to_index)
        self.hnsw_config = hnsw_config
        self.optimizers_config = optimizers_config
        self.write_batch_size = write_batch_size
        self.scroll_size = scroll_size
        self._shard: edge.EdgeShard | None = None
        self._lock: FolderLock | None = None
        self._bm25: edge.Bm25 | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def shard_path(self) -> Path:
        return Path(self.path) / self.index

    def _open(self) -> edge.EdgeShard:
        if self._shard is not None:
            return self._shard
        folder = self.shard_path
        folder.mkdir(parents=True, exist_ok=True)
        config = shard_config(self.embedding_dim, self.similarity, self.hnsw_config, self.optimizers_config)
        lock = FolderLock(folder)
        lock.acquire()  # before Edge touches the WAL, so a second process gets our clear error, not WouldBlock
        try:
            self._shard = load_or_create(folder, config, self.embedding_dim, self.payload_fields_to_index)
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self._shard

    def close(self) -> None:
        """Flush, release the engine and the folder lock. The store reopens on next use."""
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def flush(self) -> None:
        self._open().flush()

    def optimize(self) -> bool:
        """Build HNSW graphs and merge segments (blocking). Returns whether anything changed."""
        shard = self._open()
        changed = shard.optimize()
        shard.flush()
        return changed

    def info(self) -> dict[str, Any]:
        info = self._open().info()
        return {"points": info.points_count, "indexed_vectors": info.indexed_vectors_count,
                "segments": info.segments_count, "payload_indexes": sorted(info.payload_schema)}

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, path=self.path, index=self.index, embedding_dim=self.embedding_dim,
            similarity=self.similarity, use_bm25=self.use_bm25, return_embedding=self.return_embedding,
            payload_fields_to_index=self.payload_fields_to_index, hnsw_config=self.hnsw_config,
            optimizers_config=self.optimizers_config,
            write_batch_size=self.write_batch_size, scroll_size=self.scroll_size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeDocumentStore:
        return default_from_dict(cls, data)

    # ------------------------------------------------------------------ DocumentStore protocol

    def count_documents(self) -> int:
        return self._open().count(edge.CountRequest(exact=True))

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        return self._open().count(edge.CountRequest(exact=True, filter=to_edge_filter(filters)))

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return list(self._scroll(to_edge_filter(filters), with_vector=True))

    def get_documents_by_id(self, ids: list[str]) -> list[Document]:
        point_ids = [convert_id(i) for i in ids]
        return self._read(lambda payload: self._open().retrieve(point_ids, with_payload=payload, with_vector=True),
                          with_vector=True, scored=False)

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.FAIL) -> int:
        """Write documents; returns how many distinct documents were written.

        As in qdrant-haystack: NONE upserts like OVERWRITE; within one call the last copy of an id wins under
        OVERWRITE/NONE and the first under SKIP/FAIL (qdrant-haystack counts repeated ids twice; this does not).
        """
        for document in documents:
            if not isinstance(document, Document):
                raise ValueError(f"write_documents() expects Documents, got {type(document).__name__}.")
        if not documents:
            return 0
        documents = one_per_id(documents, policy)
        payloads = {d.id: checked_payload(d) for d in documents}  # all of them before anything is written
        shard = self._open()
        documents = self._apply_policy(documents, policy)
        for start in range(0, len(documents), self.write_batch_size):
            points = [to_point(d, payloads[d.id], self._sparse_of(d))
                      for d in documents[start:start + self.write_batch_size]]
            shard.update(edge.UpdateOperation.upsert_points(points))
        return len(documents)

    def delete_documents(self, document_ids: list[str]) -> None:
        if document_ids:
            self._open().update(edge.UpdateOperation.delete_points([convert_id(i) for i in document_ids]))

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete every document the filter matches; returns how many. An empty filter deletes nothing."""
        edge_filter = to_edge_filter(filters)
        if edge_filter is None:
            return 0
        shard = self._open()
        matched = shard.count(edge.CountRequest(exact=True, filter=edge_filter))
        if matched:
            shard.update(edge.UpdateOperation.delete_points_by_filter(edge_filter))
        return matched

    def delete_all_documents(self) -> None:
        self._open().update(edge.UpdateOperation.delete_points_by_filter(edge.Filter()))

    # ------------------------------------------------------------------ retrieval

    def embedding_retrieval(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        scale_score: bool = False,
        return_embedding: bool | None = None,
        score_threshold: float | None = None,
        hnsw_ef: int | None = None,
        exact: bool = False,
    ) -> list[Document]:
        """The ``top_k`` documents nearest ``query_embedding`` (HNSW once optimized, exact before)."""
        query = edge.Query.Nearest(list(query_embedding), using=DENSE)
        documents = self._query(query, filters, top_k, return_embedding, score_threshold,
                                edge.SearchParams(hnsw_ef=hnsw_ef, exact=exact))
        return [scaled(d, self.similarity) for d in documents] if scale_score else documents

    def sparse_retrieval(
        self,
        query_sparse_embedding: SparseEmbedding | None = None,
        query: str | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        return_embedding: bool | None = None,
        score_threshold: float | None = None,
    ) -> list[Document]:
        """Sparse search by a sparse embedding, or by query text through the store's BM25."""
        sparse = self._query_sparse(query_sparse_embedding, query)
        return self._query(edge.Query.Nearest(sparse, using=SPARSE), filters, top_k, return_embedding,
                           score_threshold, None)

    def hybrid_retrieval(
        self,
        query_embedding: list[float],
        query_sparse_embedding: SparseEmbedding | None = None,
        query: str | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        return_embedding: bool | None = None,
        rrf_k: int = RRF_K,
        prefetch_k: int | None = None,
    ) -> list[Document]:
        """Dense and sparse candidates (``prefetch_k`` each, both filtered) fused by Reciprocal Rank Fusion."""
        edge_filter = to_edge_filter(filters)
        depth = prefetch_k or max(top_k * 4, 20)
        prefetches = [
            edge.Prefetch(limit=depth, query=edge.Query.Nearest(self._query_sparse(query_sparse_embedding, query),
                                                                using=SPARSE), filter=edge_filter),
            edge.Prefetch(limit=depth, query=edge.Query.Nearest(list(query_embedding), using=DENSE),
                          filter=edge_filter),
        ]
        shard = self._open()
        fused = shard.query(edge.QueryRequest(limit=2 * depth, prefetches=prefetches, query=edge.Fusion.Rrf(k=rrf_k),
                                              with_payload=False, with_vector=False))
        # Documents ranked (i, j) and (j, i) tie; the engine orders ties differently from one process to the
        # next, so ties are broken by point id here, over every fused candidate, before the cut.
        chosen = sorted(fused, key=lambda p: (-p.score, point_key(p.id)))[:top_k]
        score_of = {point_key(p.id): p.score for p in chosen}
        with_vector = self._want_vectors(return_embedding)
        found = self._read(lambda payload: shard.retrieve([p.id for p in chosen], with_payload=payload,
                                                          with_vector=with_vector), with_vector=with_vector,
                           scored=False)
        scored = [replace(d, score=score_of[convert_id(d.id)]) for d in found]
        return sorted(scored, key=lambda d: (-d.score, convert_id(d.id)))

    def embed_sparse(self, text: str, as_query: bool = False) -> SparseEmbedding:
        """Edge's BM25 vector for ``text`` (term weights for documents, unit weights for queries)."""
        bm25 = self._bm25 = self._bm25 or edge.Bm25()
        vector = bm25.embed_query(text) if as_query else bm25.embed_document(text)
        return SparseEmbedding(indices=list(vector.indices), values=list(vector.values))

    # ------------------------------------------------------------------ internals

    def _query(self, query: Any, filters: dict[str, Any] | None, top_k: int, return_embedding: bool | None,
               score_threshold: float | None, params: edge.SearchParams | None) -> list[Document]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1.")
        edge_filter, with_vector = to_edge_filter(filters), self._want_vectors(return_embedding)
        return self._read(lambda payload: self._open().query(edge.QueryRequest(
            limit=top_k, query=query, filter=edge_filter, with_payload=payload, with_vector=with_vector,
            score_threshold=score_threshold, params=params)), with_vector=with_vector, scored=True)

    def _read(self, read: Callable[[bool], list[Any]], with_vector: bool, scored: bool) -> list[Document]:
        """The Documents of the points ``read(with_payload)`` returns.

        The engine fails a whole read when it cannot decode one point's payload. Then the read is repeated
        without payloads (if that fails too, the cause was not a payload, and it is raised) and each point's
        payload is fetched alone, so an unreadable point is skipped and logged instead of failing every query
        that touches it."""
        try:
            found = [(p, p.score if scored else None) for p in read(True)]
        except Exception as exc:  # qdrant-edge raises a bare Exception for an undecodable payload
            points = read(False)
            logger.error("index '%s': a payload could not be read (%s); reading %d points one by one",
                         self.index, exc, len(points))
            found = self._readable(points, with_vector, scored)
        documents = (self._document_or_none(p, score, with_vector) for p, score in found)
        return [d for d in documents if d is not None]

    def _readable(self, points: list[Any], with_vector: bool, scored: bool) -> list[tuple[Any, float | None]]:
        shard, found = self._open(), []
        for point in points:
            try:
                records = shard.retrieve([point.id], with_payload=True, with_vector=with_vector)
            except Exception as exc:
                logger.error("index '%s': skipped point %s, whose payload cannot be read: %s", self.index,
                             point.id, exc)
                continue
            found.extend((record, point.score if scored else None) for record in records)
        return found

    def _document_or_none(self, point: Any, score: float | None, with_vector: bool) -> Document | None:
        try:
            return to_document(point, score, with_vector)
        except Exception as exc:  # a payload Haystack cannot make a Document of is that point's problem only
            logger.error("index '%s': skipped point %s, whose payload is not a Document: %s", self.index,
                         point.id, exc)
            return None

    def _query_sparse(self, embedding: SparseEmbedding | None, text: str | None) -> edge.SparseVector:
        if embedding is None:
            if not text:
                raise ValueError("Sparse retrieval needs query_sparse_embedding or query text.")
            embedding = self.embed_sparse(text, as_query=True)
        return edge.SparseVector(list(embedding.indices), [float(v) for v in embedding.values])

    def _want_vectors(self, return_embedding: bool | None) -> bool:
        return self.return_embedding if return_embedding is None else return_embedding

    def _apply_policy(self, documents: list[Document], policy: DuplicatePolicy) -> list[Document]:
        if policy in (DuplicatePolicy.OVERWRITE, DuplicatePolicy.NONE):
            return documents
        # Point ids, not payloads: which documents exist needs no payload decoded.
        records = self._open().retrieve([convert_id(d.id) for d in documents], with_payload=False,
                                        with_vector=False)
        present = {point_key(r.id) for r in records}
        existing = {d.id for d in documents if convert_id(d.id) in present}
        if existing and policy == DuplicatePolicy.FAIL:
            listed = ", ".join(sorted(str(i) for i in existing)[:5])
            raise DuplicateDocumentError(f"Documents already in index '{self.index}': {listed}")
        return [d for d in documents if d.id not in existing]

    def _sparse_of(self, document: Document) -> SparseEmbedding | None:
        """The document's own sparse embedding, else (with ``use_bm25``) the BM25 vector of its content."""
        if document.sparse_embedding is None and self.use_bm25 and document.content:
            return self.embed_sparse(document.content)
        return document.sparse_embedding

    def _scroll(self, edge_filter: edge.Filter | None, with_vector: bool) -> Iterator[Document]:
        shard = self._open()
        page: dict[str, Any] = {"offset": None}

        def read(payload: bool) -> list[Any]:
            records, page["next"] = shard.scroll(edge.ScrollRequest(
                offset=page["offset"], limit=self.scroll_size, filter=edge_filter, with_payload=payload,
                with_vector=with_vector))
            return records

        while True:
            yield from self._read(read, with_vector=with_vector, scored=False)
            if page["next"] is None:
                return
            page["offset"] = page["next"]

