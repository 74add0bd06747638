"""The fusion reranker: the fused score, the weights file, and the component with the shipped weights (real
MiniLM, no mocks). Its lexical feature: tests/scoring/test_lexical.py."""

import json
import math

import pytest
from haystack import Document, Pipeline

from ragpress.rerankers import fusion
from ragpress.rerankers.reranker import Reranker
from ragpress.scoring.logistic_fusion import combine, logit


def test_combine_is_the_logistic_of_the_weighted_features():
    weights = fusion.FusionWeights(weights={"dense": 2.0, "lexical": 3.0}, bias=-1.0)
    out = combine(weights, {"dense": [0.5, 0.5], "lexical": [0.0, 1.0]})
    assert out[0] == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.0))))
    assert out[1] == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.0 + 3.0))))
    assert logit(out[1]) == pytest.approx(3.0, abs=1e-5)


def test_the_weights_file_round_trips_and_refuses_unknown_features(tmp_path):
    path = tmp_path / "fusion.json"
    weights = fusion.FusionWeights(weights={"dense": 8.0, "lexical": 9.0}, bias=-9.0, fitted_on="test")
    weights.save(path)
    assert fusion.FusionWeights.load(path) == weights
    assert fusion.is_fusion_file(str(path))
    (tmp_path / "other.json").write_text(json.dumps({"weights": {}}))
    assert not fusion.is_fusion_file(str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match="fusion features"):
        fusion.FusionWeights(weights={"bm42": 1.0}, bias=0.0)


def test_the_shipped_weights_use_lexical_evidence_on_top_of_the_dense_cosine():
    shipped = fusion.FusionWeights.load(fusion.DEFAULT_FUSION_FILE)
    assert shipped.weights["dense"] > 0 and shipped.weights["lexical"] > 0
    assert "dev" in shipped.fitted_on  # says how it was fitted, and that dev claims were not used
    tied = {name: [0.5, 0.5] for name in shipped.weights}
    tied["lexical"] = [0.1, 0.6]
    low, high = combine(shipped, tied)
    assert high > low


@pytest.fixture(scope="module")
def reranker() -> Reranker:
    component = Reranker()  # the default is the fusion reranker
    component.warm_up()
    return component


@pytest.mark.integration
def test_a_passage_holding_the_rare_query_terms_outranks_a_paraphrase_without_them(reranker):
    query = "Is the rs7903146 variant linked to type 2 diabetes?"
    documents = [
        Document(id="generic", content="A common genetic variant is linked to type 2 diabetes in adults."),
        Document(id="exact", content="The rs7903146 variant is linked to type 2 diabetes in adults."),
    ]
    ranked = reranker.run(query=query, documents=documents)["documents"]
    assert [d.id for d in ranked] == ["exact", "generic"]
    assert all(0.0 <= d.score <= 1.0 for d in ranked)


@pytest.mark.integration
def test_empty_and_non_english_passages_are_handled(reranker):
    documents = [
        Document(id="empty", content=""),
        Document(id="de", content="Nikola Tesla starb im Jahr 1943 in New York."),
        Document(id="zh", content="尼古拉·特斯拉于1943年在纽约去世。"),
        Document(id="en", content="Nikola Tesla died in New York in 1943."),
    ]
    ranked = reranker.run(query="What year did Tesla die?", documents=documents)["documents"]
    scores = {d.id: d.score for d in ranked}
    assert scores["empty"] == 0.0 and ranked[-1].id == "empty"
    assert ranked[0].id == "en"
    assert all(0.0 <= s <= 1.0 for s in scores.values())


@pytest.mark.integration
def test_a_long_passage_is_scored_by_its_best_sentence_and_whole_text(reranker):
    filler = " ".join(f"Unrelated sentence number {i} about weather records." for i in range(200))
    documents = [Document(id="long", content=filler + " Tesla died in 1943."), Document(id="x", content=filler)]
    ranked = reranker.run(query="When did Tesla die?", documents=documents)["documents"]
    assert ranked[0].id == "long"


@pytest.mark.integration
def test_yaml_round_trip_of_the_fusion_reranker_gives_the_same_scores(tmp_path):
    path = tmp_path / "fusion.json"
    fusion.FusionWeights.load(fusion.DEFAULT_FUSION_FILE).save(path)
    texts = ["Tesla died in 1943.", "Edison invented the phonograph.", "Tesla was born in Smiljan."]
    inputs = {"reranker": {"query": "When did Tesla die?", "documents": [Document(content=t) for t in texts]}}
    for model in (fusion.DEFAULT_FUSION_NAME, str(path)):
        pipeline = Pipeline()
        pipeline.add_component("reranker", Reranker(model=model, top_k=2))
        loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["ragpress"])
        assert loaded.get_component("reranker").to_dict() == pipeline.get_component("reranker").to_dict()
        before = pipeline.run(inputs)["reranker"]["documents"]
        after = loaded.run(inputs)["reranker"]["documents"]
        assert [(d.content, pytest.approx(d.score)) for d in after] == [(d.content, d.score) for d in before]
        assert before[0].content == texts[0]
