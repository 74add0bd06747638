"""Pipeline YAML can only instantiate ragpress's and Haystack's components; nothing else is ever run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragpress.pipelines.loader import BUILTIN_PIPELINES, PipelineInvalid, builtin_yaml, load_pipeline, parse_yaml
from ragpress.pipelines.registry import validate

pytestmark = pytest.mark.unit


def _one_component(type_name: str, extra: str = "") -> str:
    return f"components:\n  evil:\n    type: {type_name}\n    init_parameters: {{{extra}}}\nconnections: []\n"


@pytest.mark.parametrize("type_name", ["os.system", "subprocess.Popen", "builtins.eval", "posix.system",
                                       "ragpress_evil.Thing", "shutil.rmtree"])
def test_component_types_outside_the_allowlist_are_refused(type_name: str, tmp_path: Path) -> None:
    with pytest.raises(PipelineInvalid, match="is not allowed") as info:
        load_pipeline(_one_component(type_name))
    assert info.value.problems[0].line == 3
    assert info.value.problems[0].field == "components.evil.type"


def test_python_object_tags_are_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    yaml_text = ("components:\n  x:\n    type: ragpress.indexers.converters.TextConverter\n"
                 f"    init_parameters: !!python/object/apply:os.system ['touch {marker}']\nconnections: []\n")
    with pytest.raises(PipelineInvalid, match=r"YAML tags such as .*python.* are not accepted"):
        load_pipeline(yaml_text)
    assert not marker.exists()


def test_an_allowed_component_cannot_smuggle_a_callable_from_elsewhere() -> None:
    yaml_text = ("components:\n  gen:\n    type: haystack.components.converters.OutputAdapter\n"
                 "    init_parameters:\n      template: '{{ x }}'\n      output_type: str\n"
                 "      custom_filters:\n        f: os.system\nconnections: []\n")
    with pytest.raises(PipelineInvalid):
        load_pipeline(yaml_text)


def test_syntax_errors_point_to_the_line() -> None:
    with pytest.raises(PipelineInvalid) as info:
        parse_yaml("components:\n  a:\n    type: [unclosed\n")
    assert info.value.problems[0].line is not None and "YAML syntax error" in str(info.value)


def test_a_document_without_components_is_refused() -> None:
    with pytest.raises(PipelineInvalid, match="'components' mapping"):
        parse_yaml("just: text\n")


@pytest.mark.parametrize("name", BUILTIN_PIPELINES)
def test_the_builtin_pipelines_load_and_round_trip(name: str) -> None:
    original = load_pipeline(builtin_yaml(name)).to_dict()
    again = load_pipeline(load_pipeline(builtin_yaml(name)).dumps()).to_dict()
    assert again["components"] == original["components"]
    edges = lambda d: sorted((c["sender"], c["receiver"]) for c in d["connections"])  # noqa: E731
    assert edges(again) == edges(original)


@pytest.mark.unit
def test_a_pipeline_saved_with_pre_namespace_type_names_loads_as_the_same_components() -> None:
    current = builtin_yaml("query")
    legacy = current.replace("type: ragpress.", "type: ")
    assert "type: indexers.embedders.QueryEmbedder" in legacy
    assert load_pipeline(legacy).to_dict() == load_pipeline(current).to_dict()
    validate(legacy)  # a tenant's stored version passes the same rules


@pytest.mark.unit
def test_the_default_query_pipeline_runs_every_stage_in_order_and_plain_is_the_baseline() -> None:
    default = yaml.safe_load(builtin_yaml("query"))
    kinds = {name: spec["type"].rsplit(".", 1)[1] for name, spec in default["components"].items()}
    chain = ["embedder"] + [c["receiver"].split(".")[0] for c in default["connections"]]
    assert [kinds[name] for name in chain] == ["QueryEmbedder", "ScopedEmbeddingRetriever", "MultiScaleExpander",
                                               "ProvencePruner", "RelevanceGate", "KVCacheGenerator"]
    assert default["components"]["retriever"]["init_parameters"]["hybrid"] is True
    plain = yaml.safe_load(builtin_yaml("plain"))
    assert [spec["type"].rsplit(".", 1)[1] for spec in plain["components"].values()] == [
        "QueryEmbedder", "ScopedEmbeddingRetriever", "LocalGenerator"]
