"""A pipeline without one stage, as `ragpress eval --ablate` measures it: neighbours connected, or the stage replaced
by what a pipeline has without it."""

from __future__ import annotations

import pytest
import yaml

from ragpress.evaluation.ablation import CannotAblate, StageMissing, ablated
from ragpress.pipelines.loader import builtin_yaml, load_pipeline

pytestmark = pytest.mark.unit


def stages_and_edges(text: str) -> tuple[dict, set[tuple[str, str]]]:
    data = yaml.safe_load(text)
    return data["components"], {(c["sender"], c["receiver"]) for c in data["connections"]}


def test_a_stage_documents_pass_through_goes_and_its_neighbours_are_connected():
    components, edges = stages_and_edges(ablated(builtin_yaml("query"), "expander"))
    assert "expander" not in components
    assert ("retriever.documents", "pruner.documents") in edges
    assert not any("expander" in s or "expander" in r for s, r in edges)


def test_the_gate_after_a_pruner_goes_with_it():
    components, edges = stages_and_edges(ablated(builtin_yaml("query"), "pruner"))
    assert "pruner" not in components and "gate" not in components
    assert ("expander.documents", "generator.documents") in edges


def test_the_gate_alone_can_go():
    components, edges = stages_and_edges(ablated(builtin_yaml("query"), "gate"))
    assert "gate" not in components and "pruner" in components
    assert ("pruner.documents", "generator.documents") in edges


def test_a_kv_generator_becomes_the_sequential_one_and_a_hybrid_retriever_a_dense_one():
    components, _ = stages_and_edges(ablated(builtin_yaml("query"), "generator"))
    assert components["generator"]["type"] == "ragpress.generators.local_generator.LocalGenerator"
    assert components["generator"]["init_parameters"]["model"] == "SmolLM2-135M-Instruct"
    components, _ = stages_and_edges(ablated(builtin_yaml("query"), "retriever"))
    assert components["retriever"]["init_parameters"]["hybrid"] is False


@pytest.mark.parametrize("stage", ["expander", "pruner", "gate", "generator", "retriever"])
def test_every_ablated_default_pipeline_still_loads(stage: str):
    load_pipeline(ablated(builtin_yaml("query"), stage))


def test_a_stage_nothing_passes_through_cannot_go_and_the_message_lists_those_that_can():
    with pytest.raises(CannotAblate, match="stages that can go: retriever, expander, pruner, gate, generator"):
        ablated(builtin_yaml("query"), "embedder")


def test_a_stage_the_pipeline_lacks_is_named_with_the_stages_it_has():
    with pytest.raises(StageMissing, match="embedder, retriever, generator"):
        ablated(builtin_yaml("plain"), "pruner")
