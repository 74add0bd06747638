"""Documents as Edge points and back: qdrant-haystack's ids and payload layout, payloads checked before a write."""

from __future__ import annotations

import math

import pytest
from haystack import Document
from haystack.dataclasses import SparseEmbedding
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.document_stores.qdrant.converters import convert_id

from ragpress.base import edge_points

pytestmark = pytest.mark.unit


def unit(**meta: object) -> Document:
    return Document(id="u1", content="The bridge opened in 1932.", embedding=[0.6, 0.8],
                    meta={"doc_id": "bridges", **meta})


def test_a_document_round_trips_through_a_point_with_its_vectors() -> None:
    document, sparse = unit(level="chunk"), SparseEmbedding(indices=[3, 7], values=[1.0, 2.0])
    point = edge_points.to_point(document, edge_points.checked_payload(document), sparse)
    assert point.id.hex == convert_id("u1") and set(point.vector) == {edge_points.DENSE, edge_points.SPARSE}
    back = edge_points.to_document(point, 0.25, with_vector=True)
    assert (back.id, back.content, back.meta, back.score) == ("u1", document.content, document.meta, 0.25)
    assert back.embedding == pytest.approx([0.6, 0.8]) and back.sparse_embedding.indices == [3, 7]
    bare = edge_points.to_document(point, None, with_vector=False)
    assert bare.embedding is None and bare.sparse_embedding is None


def test_the_payload_holds_no_vectors() -> None:
    assert {"embedding", "sparse_embedding"}.isdisjoint(edge_points.checked_payload(unit()))


def test_a_payload_the_engine_could_not_read_back_is_refused_naming_its_document() -> None:
    nested: object = "x"
    for _ in range(3):
        nested = {"deeper": nested}
    with pytest.raises(edge_points.InvalidPayloadError, match="document 'bridges' \\(unit 'u1'\\) cannot be indexed"):
        edge_points.checked_payload(unit(nested=nested))


@pytest.mark.parametrize(("policy", "kept"), [(DuplicatePolicy.SKIP, "first"), (DuplicatePolicy.FAIL, "first"),
                                              (DuplicatePolicy.OVERWRITE, "second"), (DuplicatePolicy.NONE, "second")])
def test_repeated_ids_in_one_write_resolve_as_qdrant_haystack_does(policy: DuplicatePolicy, kept: str) -> None:
    copies = [Document(id="same", content="first"), Document(id="other", content="x"),
              Document(id="same", content="second")]
    resolved = edge_points.one_per_id(copies, policy)
    assert [d.id for d in resolved] == ["same", "other"] and resolved[0].content == kept


def test_scores_are_scaled_into_the_unit_interval_as_qdrant_haystack_scales_them() -> None:
    assert edge_points.scaled(Document(content="x", score=0.5), "cosine").score == 0.75
    squashed = edge_points.scaled(Document(content="x", score=100.0), "dot_product").score
    assert squashed == pytest.approx(1 / (1 + math.exp(-1)))
    assert edge_points.scaled(Document(content="x"), "cosine").score is None
