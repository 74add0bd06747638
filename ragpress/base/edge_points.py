"""Haystack Documents as Qdrant Edge points and back, laid out as qdrant-haystack lays them out.

A point has qdrant-haystack's id (``convert_id`` of the Document id) and its payload (``Document.to_dict``
without vectors, so ``meta.tenant`` is a payload path in both stores); the dense vector is named ``DENSE`` and the
sparse one ``SPARSE``. Every payload is checked before it is written (``ragpress.base.meta_limits``): the engine
stores payloads it cannot read back (nested ~128 levels deep), and one such point fails every read that returns
it, its own delete, every later write and the index's next start.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import qdrant_edge as edge
from haystack import Document
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.document_stores.qdrant.converters import convert_id

from ragpress.base.input_limits import shown
from ragpress.base.meta_limits import MetaError, check_payload

logger = logging.getLogger(__name__)

DENSE = "text-dense"
SPARSE = "text-sparse"


class InvalidPayloadError(ValueError):
    """A document whose payload the engine must not store; the message names the document and the rule."""


def checked_payload(document: Document) -> dict[str, Any]:
    """The payload the engine will store for ``document``, or InvalidPayloadError saying which rule it breaks."""
    # Vectors leave the payload before to_dict(), whose deep copy of a 384-float list costs more than the
    # upsert itself (qdrant-haystack pays it: ~10 ms per document here).
    payload = replace(document, embedding=None, sparse_embedding=None).to_dict(flatten=False)
    payload.pop("embedding", None)
    payload.pop("sparse_embedding", None)
    try:
        check_payload(payload)
    except MetaError as exc:
        name = (document.meta or {}).get("doc_id")
        which = f"document {shown(name)} (unit {shown(document.id)})" if isinstance(name, str) else (
            f"document {shown(document.id)}")
        raise InvalidPayloadError(f"{which} cannot be indexed: {exc}") from None
    return payload


def to_point(document: Document, payload: dict[str, Any], sparse: SparseEmbedding | None) -> edge.Point:
    """``document`` as a point with its ``checked_payload``, its dense vector and ``sparse`` (if any)."""
    vectors: dict[str, Any] = {}
    if document.embedding is not None:
        vectors[DENSE] = list(document.embedding)
    if sparse is not None and sparse.indices:
        vectors[SPARSE] = edge.SparseVector(list(sparse.indices), [float(v) for v in sparse.values])
    return edge.Point(id=convert_id(document.id), vector=vectors, payload=payload)


def to_document(point: Any, score: float | None, with_vector: bool) -> Document:
    """The Document a point (a record or a scored point) holds; its vectors only ``with_vector``."""
    data = dict(point.payload or {})
    data["score"] = score
    vectors = point.vector if with_vector and isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE)
    data["embedding"] = list(dense) if dense is not None else None
    sparse = vectors.get(SPARSE)
    data["sparse_embedding"] = (
        {"indices": list(sparse.indices), "values": list(sparse.values)} if sparse is not None else None)
    return Document.from_dict(data)


def one_per_id(documents: list[Document], policy: DuplicatePolicy) -> list[Document]:
    """One Document per id: the first copy under SKIP and FAIL, the last under OVERWRITE and NONE, as
    qdrant-haystack's writes resolve repeated ids."""
    # Repeated ids in one call usually mean a bug upstream, so say so.
    first_wins = policy in (DuplicatePolicy.SKIP, DuplicatePolicy.FAIL)
    unique: dict[str, Document] = {}
    for document in documents:
        if not (first_wins and document.id in unique):
            unique[document.id] = document
    if len(unique) < len(documents):
        logger.warning("write_documents got %d repeated ids in one call; kept the %s of each.",
                       len(documents) - len(unique), "first" if first_wins else "last")
    return list(unique.values())


def scaled(document: Document, similarity: str) -> Document:
    """The document with its score squashed into [0, 1] as qdrant-haystack's ``scale_score`` does, so thresholds
    carry over between the stores."""
    if document.score is None:
        return document
    if similarity == "cosine":
        return replace(document, score=(document.score + 1) / 2)
    return replace(document, score=float(1 / (1 + math.exp(-document.score / 100))))
