"""The sufficiency signals, their learned combination and the gate that abstains on it (the combination's fit:
tests/training/test_fit_sufficiency.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Document, Pipeline

from ragpress.base.model_loading import sentence_transformer
from ragpress.pipelines.loader import load_pipeline
from ragpress.rerankers.relevance_gate import INSUFFICIENT_EVIDENCE, NO_RELEVANT_PASSAGE, RelevanceGate, abstain_reason
from ragpress.rerankers.sufficiency import (
    DEFAULT_SUFFICIENCY_NAME,
    EVIDENCE_FEATURES,
    SufficiencyWeights,
    evidence_features,
)

QUERY = "Who won the Ekstraklasa Championship in 2000?"
ANSWERING = Document(
    content="Polonia Warsaw won the Ekstraklasa Championship in 2000. The club plays in Warsaw.", score=0.7,
    meta={"sentence_scores": [0.6, 0.05], "kept_sentences": [0]},
)
OFF_TOPIC = Document(
    content="The bridge opened in 1890. It carries trains over the river.", score=0.3,
    meta={"sentence_scores": [0.02, 0.01], "kept_sentences": []},
)


def weights_file(tmp_path: Path, **features: float) -> str:
    """A sufficiency model that trusts the best sentence cosine alone, unless told otherwise."""
    model = SufficiencyWeights(weights=features or {"cosine": 20.0}, bias=-10.0, threshold=0.5)
    path = tmp_path / "sufficiency.json"
    model.save(path)
    return str(path)


@pytest.mark.unit
def test_weights_are_a_logistic_model_with_a_threshold_and_survive_a_file(tmp_path: Path) -> None:
    model = SufficiencyWeights(weights={"relevance": 2.0, "cosine": 1.0}, bias=-1.5, threshold=0.4)
    assert model.probability({"relevance": 0.5, "cosine": 0.5}) == pytest.approx(0.5)
    model.save(tmp_path / "w.json")
    assert SufficiencyWeights.load(str(tmp_path / "w.json")) == model
    assert not model.needs_answer
    assert SufficiencyWeights(weights={"answer_logprob": 1.0}, bias=0.0, threshold=0.5).needs_answer


@pytest.mark.unit
def test_unknown_features_bad_thresholds_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subset"):
        SufficiencyWeights(weights={"colour": 1.0}, bias=0.0, threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        SufficiencyWeights(weights={"cosine": 1.0}, bias=0.0, threshold=1.5)
    (tmp_path / "other.json").write_text('{"kind": "ragpress-fusion"}')
    with pytest.raises(ValueError, match="not a ragpress sufficiency file"):
        SufficiencyWeights.load(str(tmp_path / "other.json"))


@pytest.mark.unit
def test_the_shipped_weights_read_only_the_evidence_so_they_can_gate_before_generation() -> None:
    model = SufficiencyWeights.load(DEFAULT_SUFFICIENCY_NAME)
    assert set(model.weights) <= set(EVIDENCE_FEATURES) and 0 < model.threshold < 1
    assert "dev never read" in model.fitted_on


@pytest.mark.unit
def test_the_gate_replays_a_recorded_probability_after_the_cheaper_checks() -> None:
    assert abstain_reason(0.9, 0.5, 0.16, None, 0.2, 0.3) == INSUFFICIENT_EVIDENCE
    assert abstain_reason(0.9, 0.5, 0.16, None, 0.4, 0.3) == ""
    assert abstain_reason(0.1, 0.5, 0.16, None, 0.2, 0.3) == NO_RELEVANT_PASSAGE


@pytest.mark.integration
def test_evidence_that_answers_looks_different_from_evidence_that_does_not() -> None:
    embedder = sentence_transformer("all-MiniLM-L6-v2")
    good = evidence_features(embedder, QUERY, [ANSWERING, OFF_TOPIC])
    bad = evidence_features(embedder, QUERY, [OFF_TOPIC])
    assert good["cosine"] > bad["cosine"] + 0.3 and good["lexical"] > bad["lexical"]
    assert good["relevance"] == 0.7 and good["margin"] == pytest.approx(0.4)
    assert good["sentence"] == 0.6 and good["mass"] == 0.6  # only kept sentences count towards the mass
    assert evidence_features(embedder, QUERY, []) == dict.fromkeys(EVIDENCE_FEATURES, 0.0)


@pytest.mark.integration
def test_the_gate_abstains_with_its_own_reason_when_the_model_judges_the_evidence_insufficient(
    tmp_path: Path,
) -> None:
    gate = RelevanceGate(min_score=0.1, sufficiency=weights_file(tmp_path))
    assert gate.run(documents=[ANSWERING, OFF_TOPIC], query=QUERY)["documents"] == [ANSWERING, OFF_TOPIC]
    assert gate.run(documents=[OFF_TOPIC], query=QUERY) == {"documents": [], "abstain_reason": INSUFFICIENT_EVIDENCE}
    # The runtime floor overrides the file's threshold, as the other floors do.
    # a floor of 0 lets weak evidence through, as long as the pruner kept something of it
    weak = Document(content=OFF_TOPIC.content, score=0.3, meta={**OFF_TOPIC.meta, "kept_sentences": [0]})
    assert gate.run(documents=[weak], query=QUERY, min_sufficiency=0.0)["documents"] == [weak]
    assert RelevanceGate(min_score=0.1, sufficiency=weights_file(tmp_path), min_sufficiency=1.0).run(
        documents=[ANSWERING], query=QUERY)["abstain_reason"] == INSUFFICIENT_EVIDENCE


@pytest.mark.unit
def test_bad_sufficiency_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_sufficiency needs sufficiency"):
        RelevanceGate(min_sufficiency=0.3)
    with pytest.raises(ValueError, match="min_sufficiency"):
        RelevanceGate(sufficiency=weights_file(tmp_path), min_sufficiency=2.0)
    with pytest.raises(ValueError, match="generator's answer"):
        RelevanceGate(sufficiency=weights_file(tmp_path, answer_logprob=1.0))
    with pytest.raises(FileNotFoundError):
        RelevanceGate(sufficiency=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="needs the query"):
        RelevanceGate(sufficiency=weights_file(tmp_path)).run(documents=[ANSWERING])


@pytest.mark.integration
def test_a_sufficiency_gate_survives_yaml_with_the_same_outputs(tmp_path: Path) -> None:
    pipeline = Pipeline()
    pipeline.add_component("gate", RelevanceGate(min_score=0.1, sufficiency=weights_file(tmp_path)))
    loaded = load_pipeline(pipeline.dumps())
    assert loaded.get_component("gate").sufficiency == weights_file(tmp_path)
    for documents in ([ANSWERING], [OFF_TOPIC]):
        inputs = {"gate": {"documents": documents, "query": QUERY}}
        assert loaded.run(inputs) == pipeline.run(inputs)


@pytest.mark.integration
def test_a_model_reading_pruner_scores_refuses_to_judge_documents_no_pruner_scored(tmp_path: Path) -> None:
    gate = RelevanceGate(min_score=0.1, sufficiency=weights_file(tmp_path, sentence=20.0))
    retrieved = Document(content=ANSWERING.content, score=0.7)  # straight from a retriever: no sentence scores
    with pytest.raises(ValueError, match="after a ProvencePruner"):
        gate.run(documents=[retrieved], query=QUERY)
    assert gate.run(documents=[ANSWERING], query=QUERY)["abstain_reason"] == ""
    # A model of other features judges retrieved documents as they are.
    cosine_only = RelevanceGate(min_score=0.1, sufficiency=weights_file(tmp_path))
    assert cosine_only.run(documents=[retrieved], query=QUERY)["abstain_reason"] == ""
