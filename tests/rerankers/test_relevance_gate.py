"""The relevance gate: no passage relevant enough means no passages, and the reason is said."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.pipelines.loader import load_pipeline
from ragpress.rerankers.relevance_gate import (
    NO_RELEVANT_PASSAGE,
    NO_RELEVANT_SENTENCE,
    NO_SENTENCE_KEPT,
    RelevanceGate,
    best_sentence_score,
)

pytestmark = pytest.mark.unit

DOCS = [Document(content="a", score=0.9), Document(content="b", score=0.2)]


def test_passages_pass_when_one_clears_the_threshold() -> None:
    assert RelevanceGate(min_score=0.5).run(documents=DOCS) == {"documents": DOCS, "abstain_reason": ""}


def test_nothing_passes_when_none_clears_it_and_the_reason_is_given() -> None:
    assert RelevanceGate(min_score=0.95).run(documents=DOCS) == {
        "documents": [],
        "abstain_reason": NO_RELEVANT_PASSAGE,
    }


def test_after_a_pruner_that_kept_no_sentence_it_abstains_with_that_reason() -> None:
    pruned = [Document(content="a. b.", score=0.9, meta={"kept_sentences": []}),
              Document(content="c.", score=0.5, meta={"kept_sentences": []})]
    assert RelevanceGate(min_score=0.1).run(documents=pruned) == {"documents": [], "abstain_reason": NO_SENTENCE_KEPT}
    pruned[1].meta["kept_sentences"] = [0]
    assert RelevanceGate(min_score=0.1).run(documents=pruned)["documents"] == pruned


def test_the_runtime_threshold_overrides_the_configured_one() -> None:
    assert RelevanceGate(min_score=0.95).run(documents=DOCS, min_score=0.5)["documents"] == DOCS


def test_low_passages_can_be_dropped_beside_relevant_ones() -> None:
    assert RelevanceGate(min_score=0.5, drop_below=0.5).run(documents=DOCS)["documents"] == DOCS[:1]


def test_unscored_passages_never_count_as_relevant() -> None:
    assert RelevanceGate().run(documents=[Document(content="x")])["documents"] == []


def test_thresholds_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="min_score"):
        RelevanceGate(min_score=1.5)


def test_yaml_round_trip_gives_the_same_outputs() -> None:
    pipeline = Pipeline()
    pipeline.add_component("gate", RelevanceGate(min_score=0.4, drop_below=0.1))
    loaded = load_pipeline(pipeline.dumps())
    assert loaded.run({"gate": {"documents": DOCS}}) == pipeline.run({"gate": {"documents": DOCS}})


PRUNED = [
    Document(content="a", score=0.9, meta={"sentence_scores": [0.02, 0.04]}),
    Document(content="b", score=0.2, meta={"sentence_scores": [0.3]}),
    Document(content="c", score=0.5),  # not pruned: no sentence scores
]


def test_the_best_sentence_score_is_read_across_documents_and_unscored_ones_count_as_zero() -> None:
    assert best_sentence_score(PRUNED) == 0.3
    assert best_sentence_score(PRUNED[2:]) == 0.0


def test_a_relevant_passage_without_a_relevant_sentence_is_refused_with_its_own_reason() -> None:
    gate = RelevanceGate(min_score=0.5, min_sentence_score=0.1)
    assert gate.run(documents=PRUNED)["documents"] == PRUNED  # the 0.3 sentence clears the floor
    assert gate.run(documents=PRUNED[::2]) == {"documents": [], "abstain_reason": NO_RELEVANT_SENTENCE}
    # The passage floor is checked first, so its reason wins when both fail.
    assert gate.run(documents=PRUNED[:1], min_score=0.95)["abstain_reason"] == NO_RELEVANT_PASSAGE
    assert RelevanceGate(min_score=0.5).run(documents=PRUNED[::2])["documents"] == PRUNED[::2]


def test_the_runtime_sentence_floor_overrides_the_configured_one() -> None:
    assert RelevanceGate(min_score=0.5).run(documents=PRUNED[::2], min_sentence_score=0.1) == {
        "documents": [], "abstain_reason": NO_RELEVANT_SENTENCE}
    assert RelevanceGate(min_score=0.5, min_sentence_score=0.5).run(
        documents=PRUNED, min_sentence_score=0.2)["documents"] == PRUNED


def test_a_sentence_floor_outside_zero_to_one_is_refused_and_survives_yaml() -> None:
    with pytest.raises(ValueError, match="min_sentence_score"):
        RelevanceGate(min_sentence_score=-0.1)
    pipeline = Pipeline()
    pipeline.add_component("gate", RelevanceGate(min_score=0.4, min_sentence_score=0.1))
    loaded = load_pipeline(pipeline.dumps())
    assert loaded.get_component("gate").min_sentence_score == 0.1
    inputs = {"gate": {"documents": PRUNED[::2]}}
    refused = {"gate": {"documents": [], "abstain_reason": NO_RELEVANT_SENTENCE}}
    assert loaded.run(inputs) == pipeline.run(inputs) == refused


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(RelevanceGate(), {"min_score": 0.12, "drop_below": None, "min_sentence_score": None,
                                    "sufficiency": None, "min_sufficiency": None, "device": "auto"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(RelevanceGate, {"min_score": 0.3, "drop_below": 0.1, "min_sentence_score": 0.2,
                                    "sufficiency": "ragpress-sufficiency-minilm", "min_sufficiency": 0.4,
                                    "device": "cpu"})
