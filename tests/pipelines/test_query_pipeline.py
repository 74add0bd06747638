"""A query pipeline as the service runs it: stages found by role, the retrieval-only variant, where a request's
top_k goes, ceiling excesses a request must override, and stage timings, on small real pipelines."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from haystack import Document, Pipeline, component
from haystack.components.rankers import MetaFieldRanker
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from ragpress.base.database import make_engine
from ragpress.base.roles import Role
from ragpress.base.schema import Scope
from ragpress.pipelines.loader import builtin_yaml
from ragpress.pipelines.query_pipeline import InvalidRequest, QueryPipeline, QueryPipelines, QueryRequest
from ragpress.pipelines.registry import CeilingExcess, PipelineRegistry, pipeline_versions
from ragpress.rerankers.relevance_gate import RelevanceGate

SCOPE = Scope("default", "docs")
LIMITS = {"top_k": 20, "max_new_tokens": 256}


@component
class Widen:
    """A component of no telling name that declares itself an expander; it takes a while."""

    role: ClassVar[Role] = Role.EXPANDER

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        time.sleep(0.03)
        return {"documents": documents}


@component
class Recall:
    """A retriever by role alone: the first ``top_k`` of a fixed list."""

    role: ClassVar[Role] = Role.RETRIEVER

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int = 10) -> dict[str, Any]:
        return {"documents": [Document(content=f"{query} {i}") for i in range(top_k)]}


def ranked_and_gated() -> Pipeline:
    """BM25 over four bridge passages -> rank by their ``rank`` meta -> a gate that lets everything through."""
    store = InMemoryDocumentStore(index=f"query-pipeline-{uuid.uuid4()}")  # the retrieval variant shares it
    store.write_documents([Document(content=f"the bridge number {i}", meta={"rank": i}) for i in range(4)])
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=10))
    pipeline.add_component("ranker", MetaFieldRanker(meta_field="rank"))
    pipeline.add_component("gate", RelevanceGate(min_score=0.0))
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "gate.documents")
    return pipeline


def ranked(excesses: tuple[CeilingExcess, ...] = ()) -> QueryPipeline:
    return QueryPipeline(ranked_and_gated(), "pipeline 'bridges' version 2", excesses)


@pytest.mark.unit
def test_components_are_found_by_role_whatever_their_name_or_origin() -> None:
    query = ranked()
    assert query.components_with(Role.RANKER) == ["ranker"]  # Haystack's, from the capability table
    assert query.components_with(Role.GATE, Role.GENERATOR) == ["gate"]  # ragpress's own declaration
    assert query.components_with(Role.RETRIEVER) == []  # Haystack's BM25 retriever is not a vetted type


@pytest.mark.unit
def test_a_query_that_does_not_generate_runs_without_its_answer_stages_and_their_params() -> None:
    query = ranked()
    assert "gate" in query.run(QueryRequest("bridge"), SCOPE).outputs
    outputs = query.run(QueryRequest("bridge", generate=False, params={"gate": {"min_score": 0.9}}), SCOPE).outputs
    assert "gate" not in outputs and len(outputs["ranker"]["documents"]) == 4


@pytest.mark.unit
def test_a_requests_top_k_goes_to_the_rankers_which_choose_from_the_retrievers_pool() -> None:
    outputs = ranked().run(QueryRequest("bridge", top_k=2), SCOPE).outputs
    assert len(outputs["retriever"]["documents"]) == 4
    assert [d.meta["rank"] for d in outputs["ranker"]["documents"]] == [3, 2]


@pytest.mark.unit
def test_without_rankers_a_requests_top_k_goes_to_the_retrievers() -> None:
    pipeline = Pipeline()
    pipeline.add_component("recall", Recall())
    outputs = QueryPipeline(pipeline, "recall").run(QueryRequest("bridge", top_k=3), SCOPE).outputs
    assert len(outputs["recall"]["documents"]) == 3


@pytest.mark.unit
def test_stages_are_timed_by_role() -> None:
    pipeline = Pipeline()
    pipeline.add_component("recall", Recall())
    pipeline.add_component("widen", Widen())
    pipeline.add_component("ranker", MetaFieldRanker(meta_field="rank", missing_meta="bottom"))
    pipeline.connect("recall.documents", "widen.documents")
    pipeline.connect("widen.documents", "ranker.documents")
    stage_ms = QueryPipeline(pipeline, "timed").run(QueryRequest("bridge"), SCOPE).stage_ms
    assert stage_ms.keys() == {"retrieve", "rerank", "prune"}
    assert stage_ms["retrieve"] >= 30 > stage_ms["rerank"] and stage_ms["prune"] == 0.0


@pytest.mark.unit
def test_a_ceiling_excess_runs_only_where_the_request_overrides_it_or_skips_its_component() -> None:
    query = ranked((CeilingExcess("ranker", "top_k", "50 is above this server's limit of 20"),))
    with pytest.raises(InvalidRequest, match=r"pipeline 'bridges' version 2 asks more than this server allows "
                                             r"\(components.ranker.init_parameters.top_k: 50 is above"):
        query.check(QueryRequest("bridge"), LIMITS)
    query.check(QueryRequest("bridge", top_k=5), LIMITS)
    query.check(QueryRequest("bridge", params={"ranker": {"top_k": 5}}), LIMITS)
    for fallback in (None, 0):  # the component would fall back to its stored value: no override
        with pytest.raises(InvalidRequest, match="asks more than this server allows"):
            query.check(QueryRequest("bridge", params={"ranker": {"top_k": fallback}}), LIMITS)
    gated = ranked((CeilingExcess("gate", "min_score", "too high"),))
    gated.check(QueryRequest("bridge", generate=False), LIMITS)
    with pytest.raises(InvalidRequest, match=r"gate\.init_parameters\.min_score: too high"):
        gated.check(QueryRequest("bridge"), LIMITS)


@pytest.mark.unit
@pytest.mark.parametrize(("request_", "message"), [
    (QueryRequest("q", top_k=500), "top_k: 500 is above this server's limit of 20"),
    (QueryRequest("q", params={"rankr": {"top_k": 3}}), "no component 'rankr'; its components are retriever, ranker"),
    (QueryRequest("q", params={"ranker": {"weight_x": 1}}), "params.ranker.weight_x: 'ranker' takes no such input"),
    (QueryRequest("q", params={"retriever": {"query": "x"}}), "params.retriever.query is set by the server"),
    (QueryRequest("q", params={"retriever": {"filters": {}}}), "give filters in the request's `filters` field"),
    (QueryRequest("q", params={"ranker": {"top_k": 99}}), "params.ranker.top_k: 99 is above this server's limit"),
    (QueryRequest("q", params={"ranker": {"top_k": "three"}}), "params.ranker.top_k: "),
])
def test_a_request_the_pipeline_cannot_take_is_refused_with_what_to_change(request_: QueryRequest,
                                                                           message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        ranked().check(request_, LIMITS)


@pytest.mark.unit
def test_a_callers_mistake_at_run_time_is_reported_as_theirs() -> None:
    with pytest.raises(InvalidRequest, match=r"^filters: "):
        ranked().run(QueryRequest("bridge", filters={"operator": "==", "value": "x"}), SCOPE)
    with pytest.raises(InvalidRequest, match=r"^params\.gate: min_sufficiency must be within"):
        ranked().run(QueryRequest("bridge", params={"gate": {"min_sufficiency": 2.0}}), SCOPE)


@pytest.mark.unit
def test_a_saved_version_that_breaks_todays_rules_cannot_run(tmp_path: Path) -> None:
    registry = PipelineRegistry(make_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    with registry.engine.begin() as conn:
        conn.execute(pipeline_versions.insert().values(
            tenant="t", name="old", version=1, deleted=False, created_at=datetime.now(UTC),
            yaml=builtin_yaml("query").replace("ragpress.indexers.retrievers.ScopedEmbeddingRetriever", "os.system")))
    with pytest.raises(InvalidRequest, match=r"pipeline 'old' version 1 cannot run on this server: .*os\.system"):
        QueryPipelines(registry).get("t", "old")


@pytest.mark.integration
def test_each_saved_version_is_built_once_per_thread_and_the_next_version_is_used_at_once(tmp_path: Path) -> None:
    registry = PipelineRegistry(make_engine(f"sqlite:///{tmp_path / 'p.db'}"), LIMITS)
    retrieval = builtin_yaml("plain").split("  generator:")[0] + (
        "connections:\n  - sender: embedder.embedding\n    receiver: retriever.query_embedding\n")
    registry.save("t", "search", retrieval)
    pipelines = QueryPipelines(registry)
    first = pipelines.get("t", "search")
    assert pipelines.get("t", "search") is first
    elsewhere: list[QueryPipeline] = []
    thread = threading.Thread(target=lambda: elsewhere.append(pipelines.get("t", "search")))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first  # Haystack pipelines keep per-run state
    registry.save("t", "search", retrieval.replace("top_k: 4", "top_k: 2"))
    assert pipelines.get("t", "search").label == "pipeline 'search' version 2"
