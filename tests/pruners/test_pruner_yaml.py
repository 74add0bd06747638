"""A pipeline holding the pruner survives a YAML round-trip and then gives the same outputs."""

import json
from pathlib import Path

import pytest
from haystack import Document, Pipeline

from ragpress.pruners.component import ProvencePruner

pytestmark = pytest.mark.integration

ALLOWED = ["ragpress"]
EXAMPLE = next(
    e
    for e in json.loads((Path(__file__).parent / "fixtures" / "dev_examples.json").read_text())
    if e["dataset"] == "scifact"
)


def test_yaml_round_trip_keeps_parameters_and_outputs():
    pipeline = Pipeline()
    pipeline.add_component(
        "pruner", ProvencePruner(threshold=0.2, top_k=3, score_threshold=0.01, max_length=256, ranking="fused",
                                 bridge=True)
    )
    text = pipeline.dumps()
    loaded = Pipeline.loads(text, allowed_modules=ALLOWED)

    assert loaded.dumps() == text
    restored = loaded.get_component("pruner")
    assert (restored.threshold, restored.top_k, restored.score_threshold, restored.max_length) == (
        0.2,
        3,
        0.01,
        256,
    )
    assert restored.ranking == "fused" and restored.bridge is True

    documents = [Document(id=str(i), content=" ".join(p)) for i, p in enumerate(EXAMPLE["passages"])]
    inputs = {"pruner": {"query": EXAMPLE["query"], "documents": documents}}
    before = pipeline.run(inputs)["pruner"]["documents"]
    after = loaded.run(inputs)["pruner"]["documents"]
    assert [d.id for d in after] == [d.id for d in before]
    assert [d.score for d in after] == pytest.approx([d.score for d in before])
    assert [d.meta["kept_sentences"] for d in after] == [d.meta["kept_sentences"] for d in before]
    assert [d.meta["pruned_text"] for d in after] == [d.meta["pruned_text"] for d in before]


def test_yaml_round_trip_keeps_the_relative_rule_and_its_outputs():
    pruner = ProvencePruner(relative_threshold=0.35, top_k=4)
    restored = ProvencePruner.from_dict(pruner.to_dict())
    assert (restored.relative_threshold, restored.threshold) == (0.35, None)

    pipeline = Pipeline()
    pipeline.add_component("pruner", pruner)
    text = pipeline.dumps()
    assert "relative_threshold: 0.35" in text
    loaded = Pipeline.loads(text, allowed_modules=ALLOWED)
    assert loaded.dumps() == text

    documents = [Document(id=str(i), content=" ".join(p)) for i, p in enumerate(EXAMPLE["passages"])]
    inputs = {"pruner": {"query": EXAMPLE["query"], "documents": documents}}
    before = pipeline.run(inputs)["pruner"]["documents"]
    after = loaded.run(inputs)["pruner"]["documents"]
    kept = [d.meta["kept_sentences"] for d in after]
    assert kept == [d.meta["kept_sentences"] for d in before]
    assert any(kept) and sum(map(len, kept)) < sum(len(d.meta["sentence_scores"]) for d in after)
