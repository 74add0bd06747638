"""Sentence fusion: query-relative features, the fused probability, and the pruner using it (its fit:
tests/training/test_fit_sentence_fusion.py)."""

import json
import math
from pathlib import Path

import pytest
from haystack import Document, Pipeline

from ragpress.pruners.component import ProvencePruner
from ragpress.pruners.sentence_fusion import SentenceFusion, fused_scores, sentence_features
from ragpress.scoring.passage_scoring import PassageScores, score_passages
from ragpress.scoring.sentences import document_spans

QUERY = "Which enzyme does rs7903146 in TCF7L2 regulate?"
PASSAGES = [
    ("Diabetes is common. The rs7903146 variant of TCF7L2 regulates an enzyme.", [(0, 19), (20, 73)]),
    ("Obesity raises risk. Age matters too.", [(0, 20), (21, 37)]),
    ("", []),
]
SCORES = [
    PassageScores(score=0.8, sentence_scores=[0.1, 0.4]),
    PassageScores(score=0.2, sentence_scores=[0.2, 0.05]),
    PassageScores(score=0.0, sentence_scores=[]),
]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.unit
def test_every_feature_is_measured_against_the_best_of_the_call():
    features = sentence_features(QUERY, PASSAGES, SCORES)
    assert all(len(column) == 4 for column in features.values())  # the empty passage has no sentences
    assert features["keep"][1] == 0.0 and max(features["keep"]) == 0.0
    assert features["keep"][2] == pytest.approx(logit(0.2) - logit(0.4))
    second = logit(0.2) - logit(0.4)  # the second passage's best sentence against the call's best
    assert features["passage_keep"] == pytest.approx([0.0, 0.0, second, second])
    assert features["relevance"] == pytest.approx([0.0, 0.0, logit(0.2) - logit(0.8), logit(0.2) - logit(0.8)])


@pytest.mark.unit
def test_the_sentence_holding_the_rare_query_terms_has_the_full_lexical_share():
    features = sentence_features(QUERY, PASSAGES, SCORES)
    assert features["sentence_lexical"][1] == 1.0
    assert features["sentence_lexical"][2:] == [0.0, 0.0]  # no query term at all
    assert features["passage_lexical"] == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.unit
def test_without_any_lexical_match_the_lexical_features_are_zero_not_undefined():
    features = sentence_features("zebra quagga", PASSAGES, SCORES)
    assert features["sentence_lexical"] == [0.0] * 4
    assert features["passage_lexical"] == [0.0] * 4


@pytest.mark.unit
def test_fused_scores_are_the_logistic_of_the_weighted_features_per_passage():
    model = SentenceFusion(weights={"keep": 1.5, "sentence_lexical": 2.0}, bias=-1.0, threshold=0.5)
    features = sentence_features(QUERY, PASSAGES, SCORES)
    fused = fused_scores(model, QUERY, PASSAGES, SCORES)
    assert [len(f) for f in fused] == [2, 2, 0]
    flat = [p for f in fused for p in f]
    for i, p in enumerate(flat):
        z = -1.0 + 1.5 * features["keep"][i] + 2.0 * features["sentence_lexical"][i]
        assert p == pytest.approx(1 / (1 + math.exp(-z)))
    assert flat[1] == max(flat)  # best keep score and the rare terms


@pytest.mark.unit
def test_a_fusion_refuses_unknown_features_and_thresholds_outside_the_unit_interval():
    with pytest.raises(ValueError, match="subset"):
        SentenceFusion(weights={"colour": 1.0}, bias=0.0, threshold=0.1)
    with pytest.raises(ValueError, match="subset"):
        SentenceFusion(weights={}, bias=0.0, threshold=0.1)
    with pytest.raises(ValueError, match="threshold"):
        SentenceFusion(weights={"keep": 1.0}, bias=0.0, threshold=1.5)
    model = SentenceFusion(weights={"keep": 1.0}, bias=-2.0, threshold=0.1, fitted_on="test")
    assert SentenceFusion.from_config(json.loads(json.dumps(model.to_config()))) == model
    assert SentenceFusion.from_config(None) is None


EXAMPLE = next(
    e for e in json.loads((Path(__file__).parent / "fixtures" / "dev_examples.json").read_text())
    if e["dataset"] == "xquad"
)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return [Document(id=str(i), content=" ".join(p)) for i, p in enumerate(EXAMPLE["passages"])]


@pytest.mark.integration
def test_the_shipped_weights_carry_a_fitted_fusion_the_pruner_applies_by_default(documents):
    pruner = ProvencePruner()
    fusion = pruner.fusion()
    assert fusion is not None and 0.0 < fusion.threshold < 1.0
    assert pruner.default_rule() == (fusion.threshold, None)
    raw = ProvencePruner(sentence_fusion=False)
    assert raw.fusion() is None and raw.default_rule()[0] != fusion.threshold

    query = EXAMPLE["query"]
    passages = [(d.content, document_spans(d)) for d in documents]
    scores = score_passages(pruner._model, pruner._tokenizer, query, passages)
    expected = fused_scores(fusion, query, passages, scores)
    fused = {d.id: d.meta["sentence_scores"] for d in pruner.run(query=query, documents=documents)["documents"]}
    plain = {d.id: d.meta["sentence_scores"] for d in raw.run(query=query, documents=documents)["documents"]}
    for d, want, score in zip(documents, expected, scores, strict=True):
        assert fused[d.id] == pytest.approx(want, abs=1e-5)
        assert plain[d.id] == pytest.approx(score.sentence_scores, abs=1e-5)


@pytest.mark.integration
def test_without_a_rule_the_fusion_threshold_decides_what_is_kept(documents):
    pruner = ProvencePruner()
    threshold = pruner.fusion().threshold
    default = pruner.run(query=EXAMPLE["query"], documents=documents)["documents"]
    explicit = pruner.run(query=EXAMPLE["query"], documents=documents, threshold=threshold)["documents"]
    assert [d.meta["kept_sentences"] for d in default] == [d.meta["kept_sentences"] for d in explicit]
    for d in default:
        scores = d.meta["sentence_scores"]
        assert d.meta["kept_sentences"] == [i for i, s in enumerate(scores) if s >= threshold - 1e-6]


@pytest.mark.integration
def test_yaml_round_trip_keeps_the_fusion_switch_and_the_outputs(documents):
    pipeline = Pipeline()
    pipeline.add_component("pruner", ProvencePruner(sentence_fusion=False, top_k=3))
    text = pipeline.dumps()
    assert "sentence_fusion: false" in text
    loaded = Pipeline.loads(text, allowed_modules=["ragpress"])
    assert loaded.get_component("pruner").sentence_fusion is False
    inputs = {"pruner": {"query": EXAMPLE["query"], "documents": documents}}
    before = pipeline.run(inputs)["pruner"]["documents"]
    after = loaded.run(inputs)["pruner"]["documents"]
    assert [d.meta["sentence_scores"] for d in after] == [d.meta["sentence_scores"] for d in before]
    assert [d.meta["kept_sentences"] for d in after] == [d.meta["kept_sentences"] for d in before]
