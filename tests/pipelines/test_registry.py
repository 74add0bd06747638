"""Saving a pipeline: a tenant's YAML stays under the server's cost ceilings, and a refusal points to the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragpress.base.database import make_engine
from ragpress.base.limits import ceilings
from ragpress.base.settings import Settings
from ragpress.pipelines import registry
from ragpress.pipelines.loader import PipelineInvalid, builtin_yaml
from ragpress.pipelines.registry import validate

pytestmark = pytest.mark.unit

LIMITS = {"top_k": 20, "token_budget": 4096, "max_context_tokens": 4096, "max_new_tokens": 256}


@pytest.mark.parametrize("name", ["query", "plain", "pruned", "kv", "remote"])
def test_the_builtin_pipelines_fit_the_default_ceilings(name: str) -> None:
    validate(builtin_yaml(name), ceilings(Settings()))


def test_a_value_above_a_ceiling_is_refused_at_its_own_components_line() -> None:
    text = builtin_yaml("pruned").replace("top_k: 5", "top_k: 500")  # the pruner's, the second top_k
    with pytest.raises(PipelineInvalid) as info:
        validate(text, LIMITS)
    [problem] = info.value.problems
    assert problem.field == "components.pruner.init_parameters.top_k"
    assert "top_k: 500" in text.splitlines()[problem.line - 1]
    assert "limit of 20" in problem.message


def test_every_value_over_a_ceiling_is_reported_at_once() -> None:
    text = builtin_yaml("pruned").replace("max_new_tokens: 64", "max_new_tokens: 100000").replace(
        "token_budget: 1536", "token_budget: 99999")
    with pytest.raises(PipelineInvalid) as info:
        validate(text, LIMITS)
    assert {p.field for p in info.value.problems} == {"components.generator.init_parameters.max_new_tokens",
                                                      "components.expander.init_parameters.token_budget"}


def test_excesses_name_their_component_and_parameter_for_a_request_to_override() -> None:
    text = builtin_yaml("pruned").replace("top_k: 5", "top_k: 500")
    [excess] = registry.ceiling_excesses(text, LIMITS)
    assert (excess.component, excess.parameter) == ("pruner", "top_k") and "limit of 20" in excess.message
    assert excess.field == "components.pruner.init_parameters.top_k"


def test_without_ceilings_only_validity_is_checked() -> None:
    validate(builtin_yaml("pruned").replace("max_new_tokens: 64", "max_new_tokens: 100000"))


def test_history_and_pipeline_count_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "VERSIONS_KEPT", 3)
    monkeypatch.setattr(registry, "MAX_PIPELINES_PER_TENANT", 2)
    store = registry.PipelineRegistry(make_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    for _ in range(5):
        store.save("t", "mine", builtin_yaml("query"))
    store.delete("t", "mine")
    assert [v["version"] for v in store.versions("t", "mine")] == [4, 5, 6]
    with pytest.raises(registry.PipelineNotFound):
        store.get("t", "mine", 1)
    store.save("t", "second", builtin_yaml("query"))
    with pytest.raises(PipelineInvalid, match="at most 2 pipelines"):
        store.save("t", "third", builtin_yaml("query"))
    store.save("other-tenant", "third", builtin_yaml("query"))
