"""A query's response body: what the generator read, what a refusal judged, the answer, token counts, timings."""

from __future__ import annotations

import time

import pytest
from haystack import Document

from ragpress.base import schema
from ragpress.pipelines.query_pipeline import QueryRun
from ragpress.query_response import query_response

pytestmark = pytest.mark.unit

STAGES = {"retrieve": 4.0, "rerank": 0.0, "prune": 12.5}


def words(text: str) -> int:
    return len(text.split())


def passage(doc_id: str, text: str, **meta: object) -> Document:
    return Document(content=text, score=0.5, meta={schema.TENANT: "t", schema.COLLECTION: "c",
                                                   schema.DOC_ID: doc_id, schema.LEVEL: "chunk", **meta})


RETRIEVED = [passage("museum", "The museum opens at nine. It closes at five.", source="a.txt"),
             passage("park", "The park never closes.")]
PRUNED = [passage("museum", "The museum opens at nine. It closes at five.", pruned_text="The museum opens at nine.",
                  kept_sentences=[0], sentence_scores=[0.9, 0.1])]


def test_an_answer_comes_with_the_passages_the_generator_read_and_their_pruned_token_counts() -> None:
    outputs = {"retriever": {"documents": RETRIEVED}, "pruner": {"documents": PRUNED},
               "generator": {"replies": ["At nine."], "meta": [{"abstained": False, "ttft_ms": 80.04}]}}
    body = query_response(QueryRun(outputs, dict(STAGES)), words, time.perf_counter())
    assert body["answer"] == "At nine." and body["abstained"] is False and "abstain_reason" not in body
    assert body["usage"] == {"context_tokens": 9, "context_tokens_after_pruning": 5}
    [shown] = body["documents"]
    assert (shown["doc_id"], shown["pruned_text"], shown["kept_sentences"]) == ("museum", "The museum opens at nine.",
                                                                                [0])
    assert shown["meta"] == {}  # scope, hashes and scores are the server's
    assert body["timings_ms"]["ttft"] == 80.0 and body["timings_ms"]["prune"] == 12.5
    assert body["timings_ms"]["total"] >= 0


def test_a_refusal_shows_the_passages_it_judged_and_counts_no_context_read() -> None:
    outputs = {"retriever": {"documents": RETRIEVED},
               "gate": {"documents": [], "abstain_reason": "no_relevant_passage"},
               "generator": {"replies": [""], "meta": [{"abstained": True}]}}
    body = query_response(QueryRun(outputs, dict(STAGES)), words, time.perf_counter())
    assert body["abstained"] is True and body["abstain_reason"] == "no_relevant_passage"
    assert [d["doc_id"] for d in body["documents"]] == ["museum", "park"]
    assert body["usage"]["context_tokens"] == 0


def test_a_retrieval_only_query_has_no_answer_fields() -> None:
    body = query_response(QueryRun({"retriever": {"documents": RETRIEVED}}, dict(STAGES)), words, time.perf_counter())
    assert {"answer", "abstained", "abstain_reason"}.isdisjoint(body)
    assert body["documents"][0]["meta"] == {"source": "a.txt"} and "ttft" not in body["timings_ms"]


@pytest.mark.parametrize(("generator_meta", "kv_cache"), [
    ({"kv_chunks_loaded": 3, "kv_chunks_encoded": 1, "kv_stored_bytes": 7200, "kv_context_tokens": 1000},
     {"hits": 3, "misses": 1, "stored_bytes": 7200, "tokens": 1000}),  # a miss was encoded on the spot
    ({"kv_chunks_loaded": 1, "kv_chunks_missing": 2, "mode": "sequential"},
     {"hits": 1, "misses": 2, "stored_bytes": 0, "tokens": 0}),  # prefilled: no states read
])
def test_a_kv_cache_generators_lookups_come_back_as_hits_and_misses_with_the_bytes_read(
        generator_meta: dict[str, object], kv_cache: dict[str, int]) -> None:
    outputs = {"retriever": {"documents": RETRIEVED}, "generator": {"replies": ["At nine."], "meta": [generator_meta]}}
    assert query_response(QueryRun(outputs, dict(STAGES)), words, time.perf_counter())["kv_cache"] == kv_cache


def test_no_kv_cache_field_when_no_generator_looked_states_up() -> None:
    generated = {"retriever": {"documents": RETRIEVED}, "generator": {"replies": ["At nine."], "meta": [{}]}}
    retrieved_only = {"retriever": {"documents": RETRIEVED}}
    for outputs in (generated, retrieved_only):
        assert "kv_cache" not in query_response(QueryRun(outputs, dict(STAGES)), words, time.perf_counter())
