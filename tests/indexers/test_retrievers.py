"""ScopedEmbeddingRetriever over the process's embedded Edge index: level and strategy filters, hybrid search."""

from __future__ import annotations

from typing import Any

import pytest
from haystack import Document, Pipeline
from haystack.document_stores.types import DuplicatePolicy
from serialization import assert_pinned, assert_restored

from ragpress.base import schema
from ragpress.base.document_stores import shared_store
from ragpress.indexers.retrievers import ScopedEmbeddingRetriever
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.integration

SCOPE = schema.Scope("default", "retrievers")
QUERY = [1.0, 0.5, 0.2] + [0.0] * 381  # nearest axis 0, then 1, then 2


def _unit(text: str, axis: int, strategy: str = "fixed", level: str = "chunk") -> Document:
    meta = {schema.TENANT: SCOPE.tenant, schema.COLLECTION: SCOPE.collection,
            schema.DOC_ID: text[:8], schema.CONTENT_HASH: "h", schema.LEVEL: level, schema.POSITION: 0,
            schema.STRATEGY: strategy}
    vector = [0.0] * 384
    vector[axis] = 1.0
    return Document(id=schema.unit_id_of(meta), content=text, meta=meta, embedding=vector)


@pytest.fixture(scope="module")
def units() -> list[Document]:
    written = [
        _unit("Herons nest by the river bend.", 0),
        _unit("The quokka lives on Rottnest Island.", 1),
        _unit("Pears grew well in the dry year.", 2),
        _unit("Herons nest by the river bend.", 0, strategy="late"),
        _unit("Herons nest by the river bend.", 0, level="slice"),
    ]
    shared_store().write_documents(written, policy=DuplicatePolicy.OVERWRITE)
    return written


def _texts(documents: list[Document]) -> list[tuple[str, str]]:
    return [(d.content or "", d.meta[schema.STRATEGY]) for d in documents]


def test_one_collection_holds_the_same_span_from_two_strategies_and_a_query_picks_one(units: Any) -> None:
    both = ScopedEmbeddingRetriever(top_k=2).run(query_embedding=QUERY, scope=SCOPE)["documents"]
    herons = "Herons nest by the river bend."
    assert sorted(_texts(both)) == [(herons, "fixed"), (herons, "late")]
    late = ScopedEmbeddingRetriever(top_k=5, strategy="late").run(query_embedding=QUERY, scope=SCOPE)["documents"]
    assert _texts(late) == [(herons, "late")]


def test_hybrid_lifts_the_unit_whose_words_the_query_uses(units: Any) -> None:
    dense = ScopedEmbeddingRetriever(top_k=3, strategy="fixed")
    hybrid = ScopedEmbeddingRetriever(top_k=3, strategy="fixed", hybrid=True)
    query = "where does the quokka live"
    assert dense.run(query_embedding=QUERY, scope=SCOPE, query=query)["documents"][0].content.startswith("Herons")
    assert hybrid.run(query_embedding=QUERY, scope=SCOPE, query=query)["documents"][0].content.startswith("The quokka")
    with pytest.raises(ValueError, match="query text"):
        hybrid.run(query_embedding=QUERY, scope=SCOPE)


def test_the_filters_stay_inside_the_scope_and_level(units: Any) -> None:
    slices = ScopedEmbeddingRetriever(top_k=5, level="slice").run(query_embedding=QUERY, scope=SCOPE)["documents"]
    assert [d.meta[schema.LEVEL] for d in slices] == ["slice"]
    other = schema.Scope("default", "elsewhere")
    hybrid = ScopedEmbeddingRetriever(hybrid=True)
    assert hybrid.run(query_embedding=QUERY, scope=other, query="quokka")["documents"] == []


@pytest.mark.unit
def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ScopedEmbeddingRetriever(strategy="")
    with pytest.raises(ValueError):
        ScopedEmbeddingRetriever(level="page")


def test_yaml_round_trip_keeps_strategy_and_hybrid(units: Any) -> None:
    pipeline = Pipeline()
    pipeline.add_component("retriever", ScopedEmbeddingRetriever(top_k=3, strategy="fixed", hybrid=True))
    loaded = load_pipeline(pipeline.dumps())
    retriever = loaded.get_component("retriever")
    assert (retriever.top_k, retriever.strategy, retriever.hybrid) == (3, "fixed", True)
    inputs = {"retriever": {"query_embedding": QUERY, "scope": SCOPE, "query": "quokka"}}
    assert [d.id for d in loaded.run(inputs)["retriever"]["documents"]] == \
        [d.id for d in pipeline.run(inputs)["retriever"]["documents"]]


@pytest.mark.unit
@pytest.mark.parametrize("forged", [{"tenant": "default", "collection": "retrievers"}, "default/retrievers", None])
def test_a_scope_the_server_did_not_make_is_refused(forged: object) -> None:
    with pytest.raises(ValueError, match="server's Scope"):
        ScopedEmbeddingRetriever().run(query_embedding=QUERY, scope=forged)  # type: ignore[arg-type]


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(ScopedEmbeddingRetriever(), {"top_k": 10, "level": "chunk", "strategy": None, "hybrid": False})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(ScopedEmbeddingRetriever, {"top_k": 3, "level": "slice", "strategy": "late", "hybrid": True})
