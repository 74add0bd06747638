"""A tenant's pipeline holds only vetted components, binds nothing the server binds, and feeds no server input."""

from __future__ import annotations

import copy
import importlib

import pytest
import yaml
from haystack import Pipeline
from haystack.components.converters import OutputAdapter
from haystack.components.joiners import DocumentJoiner
from haystack.components.rankers import LostInTheMiddleRanker

from ragpress.base.roles import Role
from ragpress.base.schema import Scope
from ragpress.indexers.context_expander import MultiScaleExpander
from ragpress.pipelines.capabilities import (
    MAX_COMPONENTS,
    TENANT_COMPONENTS,
    graph_problems,
    offered_models,
    role_of,
)
from ragpress.pipelines.loader import PipelineInvalid, builtin_yaml
from ragpress.pipelines.registry import validate

pytestmark = pytest.mark.unit

JOINER = "haystack.components.joiners.document_joiner.DocumentJoiner"
LOST_IN_THE_MIDDLE = "haystack.components.rankers.lost_in_the_middle.LostInTheMiddleRanker"

RETRIEVE = """components:
  embedder:
    type: ragpress.indexers.embedders.QueryEmbedder
  retriever:
    type: ragpress.indexers.retrievers.ScopedEmbeddingRetriever
{extra}connections:
  - sender: embedder.embedding
    receiver: retriever.query_embedding
{more}"""


def query_pipeline_with(component: str, parameter: str, value: object) -> str:
    data = yaml.safe_load(builtin_yaml("query"))
    data["components"][component].setdefault("init_parameters", {})[parameter] = value
    return yaml.safe_dump(data, sort_keys=False)


def problems(text: str) -> list[tuple[str | None, str]]:
    with pytest.raises(PipelineInvalid) as info:
        validate(text)
    return [(p.field, p.message) for p in info.value.problems]


@pytest.mark.parametrize("name", ["query", "plain", "pruned", "kv", "remote"])
def test_the_built_in_query_pipelines_are_tenant_pipelines(name: str) -> None:
    validate(builtin_yaml(name))


def test_the_ingestion_pipeline_is_the_servers_own() -> None:
    refused = {field for field, _ in problems(builtin_yaml("ingestion"))}
    assert refused == {f"components.{c}.type" for c in ("converter", "chunker", "embedder", "writer")}


def test_an_unvetted_type_is_refused_at_its_line_naming_the_vetted_ones() -> None:
    text = RETRIEVE.format(extra="  fetch:\n    type: haystack.components.fetchers.LinkContentFetcher\n", more="")
    with pytest.raises(PipelineInvalid) as info:
        validate(text)
    [problem] = info.value.problems
    assert problem.field == "components.fetch.type" and "LinkContentFetcher" in text.splitlines()[problem.line - 1]
    assert "ScopedEmbeddingRetriever" in problem.message


def test_a_server_input_cannot_be_connected() -> None:
    extra = "  expander:\n    type: ragpress.indexers.context_expander.MultiScaleExpander\n"
    more = "  - sender: retriever.documents\n    receiver: expander.scope\n"
    [(field, message)] = problems(RETRIEVE.format(extra=extra, more=more))
    assert field == "connections.expander.scope"
    assert message == "'expander.scope' is set by the server for every query; it cannot be connected from " \
                      "'retriever.documents'"


def test_the_built_graph_is_checked_too_where_a_connection_names_no_socket() -> None:
    pipeline = Pipeline()
    pipeline.add_component("forge", OutputAdapter(template="{{ x }}", output_type=Scope))
    pipeline.add_component("expander", MultiScaleExpander())
    pipeline.connect("forge", "expander")
    fed = [p for p in graph_problems("", pipeline) if p.field == "connections.expander.scope"]
    assert len(fed) == 1 and "set by the server" in fed[0].message


@pytest.mark.parametrize(("parameter", "value", "phrase"), [
    ("model", "/etc", "not offered"),
    ("model", "sentence-transformers/all-mpnet-base-v2", "not offered"),
    ("batch_size", '{"type": "haystack.utils.Secret"}', "serialized object"),
    ("batch_size", '[{"type": "env_var", "env_vars": [HOME]}]', "serialized object"),
])
def test_models_are_the_servers_and_no_parameter_is_an_object(parameter: str, value: str, phrase: str) -> None:
    extra = "  e2:\n    type: ragpress.indexers.embedders.QueryEmbedder\n    init_parameters:\n" \
            f"      {parameter}: {value}\n"
    [(field, message)] = problems(RETRIEVE.format(extra=extra, more=""))
    assert field == f"components.e2.init_parameters.{parameter}" and phrase in message


def test_the_operators_configured_models_are_offered_beside_the_bundled_ones() -> None:
    models = offered_models(embedder="/srv/models/my-embedder")
    assert {"all-MiniLM-L6-v2", "embeddinggemma-300m", "/srv/models/my-embedder"} == models["embedder"]
    assert models["reranker"] == {"ragpress-fusion-minilm", "ragpress-provence-minilm"}
    text = builtin_yaml("query").replace("model: all-MiniLM-L6-v2", "model: /srv/models/my-embedder")
    with pytest.raises(PipelineInvalid, match="not offered"):
        validate(text)


def test_a_loop_is_refused() -> None:
    extra = f"  join:\n    type: {JOINER}\n  rank:\n    type: {LOST_IN_THE_MIDDLE}\n"
    more = "  - sender: retriever.documents\n    receiver: join.documents\n" \
           "  - sender: join.documents\n    receiver: rank.documents\n" \
           "  - sender: rank.documents\n    receiver: join.documents\n"
    assert any("loop" in message for _, message in problems(RETRIEVE.format(extra=extra, more=more)))


def test_too_many_components_are_refused() -> None:
    extra = "".join(f"  j{i}:\n    type: {JOINER}\n" for i in range(MAX_COMPONENTS))
    assert problems(RETRIEVE.format(extra=extra, more="")) == [
        ("components", f"a pipeline may have at most {MAX_COMPONENTS} components")]


def test_every_vetted_type_exists_under_the_name_it_is_vetted_by() -> None:
    for name in TENANT_COMPONENTS:
        module, _, kind = name.rpartition(".")
        cls = getattr(importlib.import_module(module), kind)
        assert f"{cls.__module__}.{cls.__name__}" == name


def test_every_vetted_type_has_a_role_its_own_or_the_tables() -> None:
    for name in TENANT_COMPONENTS:
        module, _, kind = name.rpartition(".")
        cls = getattr(importlib.import_module(module), kind)
        assert isinstance(role_of(cls), Role), name


def test_haystacks_components_take_their_role_from_the_table_and_others_have_none() -> None:
    assert role_of(LostInTheMiddleRanker) is Role.RANKER
    assert role_of(DocumentJoiner) is Role.JOINER
    assert role_of(MultiScaleExpander) is Role.EXPANDER  # ragpress's own declaration
    assert role_of(OutputAdapter) is None


@pytest.mark.parametrize(("component", "parameter", "value", "phrase"), [
    ("retriever", "top_k", "2.5", "expects int"),
    ("embedder", "model", "[a, b]", "expects str"),
    ("embedder", "model", "SmolLM2-135M-Instruct", "embedder model 'SmolLM2-135M-Instruct' is not offered"),
    ("embedder", "batch_size", "100000", "from 1 to 64"),
    ("retriever", "level", "7", "expects str or null"),
])
def test_parameters_hold_their_declared_types_roles_and_bounds(component: str, parameter: str, value: str,
                                                               phrase: str) -> None:
    [(field, message)] = problems(query_pipeline_with(component, parameter, yaml.safe_load(value)))
    assert field == f"components.{component}.init_parameters.{parameter}" and phrase in message


def test_a_long_system_prompt_is_refused() -> None:
    [(field, message)] = problems(query_pipeline_with("generator", "system_prompt", "z " * 1500))
    assert field == "components.generator.init_parameters.system_prompt" and "the limit is 2,000" in message


@pytest.mark.parametrize(("setting", "phrase"), [
    ("connection_type_validation: false", "type checks on"), ("max_runs_per_component: 0", "from 1 to 100"),
    ("max_runs_per_component: x", "from 1 to 100"),
])
def test_pipeline_settings_that_would_loosen_its_checks_are_refused(setting: str, phrase: str) -> None:
    assert any(phrase in message for _, message in problems(builtin_yaml("query") + setting + "\n"))


def test_an_input_nothing_gives_is_refused_before_a_query_fails_on_it() -> None:
    text = ("components:\n  retriever:\n    type: ragpress.indexers.retrievers.ScopedEmbeddingRetriever\n"
            "connections: []\n")
    assert problems(text) == [("components.retriever", "'retriever.query_embedding' is never given: connect it "
                                                       "from another component")]


@pytest.mark.parametrize(("component", "value"), [("embedder", "cpu"), ("generator", "cuda")])
def test_where_models_run_is_the_servers_choice_not_a_tenants(component: str, value: str) -> None:
    [(field, message)] = problems(query_pipeline_with(component, "device", value))
    assert field == f"components.{component}.init_parameters.device" and "set by the server" in message
    validate(query_pipeline_with(component, "device", "auto"))  # the server's own default may be written back


def test_one_query_cannot_fan_out_to_many_model_stages() -> None:
    data = yaml.safe_load(builtin_yaml("query"))
    for i in range(3):
        data["components"][f"generator{i}"] = copy.deepcopy(data["components"]["generator"])
        data["connections"].append({"sender": "retriever.documents", "receiver": f"generator{i}.documents"})
    assert ("components", "a tenant's pipeline may have at most 1 generator component; this one has 4") in problems(
        yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(("parameter", "value"), [("timeout_s", 1.0e12), ("max_retries", 50), ("backoff_s", 1e300),
                                                  ("max_context_chars", 999_999_999)])
def test_how_long_a_remote_call_may_hold_a_query_slot_is_bounded(parameter: str, value: float) -> None:
    data = yaml.safe_load(builtin_yaml("remote"))
    data["components"]["generator"]["init_parameters"][parameter] = value
    [(field, message)] = problems(yaml.safe_dump(data, sort_keys=False))
    assert field == f"components.generator.init_parameters.{parameter}" and "on this server" in message
