"""The Reranker with the shipped weights (the default fusion reranker and the Provence relevance head) ranks
real gold passages first; any CrossEncoder can stand in."""

import json
from pathlib import Path

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.rerankers.fusion import DEFAULT_FUSION_NAME
from ragpress.rerankers.reranker import Reranker
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME

pytestmark = pytest.mark.integration


EXAMPLES = json.loads((Path(__file__).parents[1] / "pruners" / "fixtures" / "dev_examples.json").read_text())


def case(example: dict) -> object:
    return pytest.param(example, id=f"{example['dataset']}:{example['query'][:30]}")


def documents_of(example: dict) -> list[Document]:
    # The gold passage is listed first in the fixture; feed it last so a no-op reranker would fail.
    return [
        Document(id=str(i), content=" ".join(p)) for i, p in reversed(list(enumerate(example["passages"])))
    ]


@pytest.fixture(scope="module", params=[DEFAULT_FUSION_NAME, DEFAULT_MODEL_NAME])
def reranker(request) -> Reranker:
    component = Reranker(model=request.param)
    component.warm_up()
    return component


@pytest.mark.parametrize("example", [case(e) for e in EXAMPLES])
def test_the_gold_passage_of_a_dev_query_is_ranked_first(reranker, example):
    ranked = reranker.run(query=example["query"], documents=documents_of(example))["documents"]
    assert ranked[0].id == "0"


def test_scores_are_probabilities_sorted_best_first(reranker):
    example = EXAMPLES[0]
    ranked = reranker.run(query=example["query"], documents=documents_of(example))["documents"]
    scores = [d.score for d in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [d.content for d in ranked if d.id == "0"] == [" ".join(example["passages"][0])]


def test_top_k_and_score_threshold_at_run_time_override_init(reranker):
    example = EXAMPLES[0]
    component = Reranker(top_k=4)
    assert len(component.run(query=example["query"], documents=documents_of(example))["documents"]) == 4
    assert (
        len(component.run(query=example["query"], documents=documents_of(example), top_k=1)["documents"]) == 1
    )
    floor = component.run(query=example["query"], documents=documents_of(example), score_threshold=1.0)
    assert floor["documents"] == []


def test_an_empty_document_list_and_an_empty_passage_are_handled(reranker):
    assert reranker.run(query="anything", documents=[])["documents"] == []
    out = reranker.run(query="anything", documents=[Document(content="")])["documents"]
    assert out[0].score == 0.0


def test_yaml_round_trip_gives_the_same_ranking():
    example = EXAMPLES[1]
    pipeline = Pipeline()
    pipeline.add_component("reranker", Reranker(model=DEFAULT_MODEL_NAME, top_k=3, max_length=384))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["ragpress"])
    assert loaded.get_component("reranker").to_dict() == pipeline.get_component("reranker").to_dict()
    inputs = {"reranker": {"query": example["query"], "documents": documents_of(example)}}
    before = pipeline.run(inputs)["reranker"]["documents"]
    after = loaded.run(inputs)["reranker"]["documents"]
    assert [(d.id, pytest.approx(d.score)) for d in after] == [(d.id, d.score) for d in before]


@pytest.mark.slow
def test_any_sentence_transformers_cross_encoder_directory_can_be_named(tmp_path):
    from sentence_transformers import CrossEncoder

    from ragpress.base.models import resolve

    # A cross-encoder built from the bundled MiniLM (untrained head): checks the interface, not quality.
    CrossEncoder(
        resolve("all-MiniLM-L6-v2"), num_labels=1, device="cpu", local_files_only=True
    ).save_pretrained(str(tmp_path / "ce"))
    component = Reranker(model=str(tmp_path / "ce"), top_k=3)
    component.warm_up()
    ranked = component.run(query=EXAMPLES[0]["query"], documents=documents_of(EXAMPLES[0]))["documents"]
    assert len(ranked) == 3
    assert all(0.0 <= d.score <= 1.0 for d in ranked)
    assert [d.score for d in ranked] == sorted((d.score for d in ranked), reverse=True)


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(Reranker(), {"model": "ragpress-fusion-minilm", "top_k": None, "score_threshold": None,
                               "max_length": 512, "batch_size": 16, "quantize": False, "device": "auto"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(Reranker, {"model": "ragpress-provence-minilm", "top_k": 3, "score_threshold": 0.1,
                               "max_length": 128, "batch_size": 2, "quantize": True, "device": "cpu"})
