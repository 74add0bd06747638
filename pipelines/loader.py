"""Load pipeline YAML safely: only ragpress's own and Haystack's components can ever be instantiated.

The YAML is parsed within bounds first (``ragpress.pipelines.safe_yaml``: no tags, anchors or aliases, size and depth
limits), its shape is checked, every component type is checked against the module allowlist, and only then is
the YAML handed to Haystack with that same allowlist and nothing more. This is the server's own loader (its
built-in pipelines); what a *tenant's* pipeline may contain is narrower (``ragpress.pipelines.capabilities``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from haystack import Pipeline
from haystack.core.errors import DeserializationError, PipelineError

from ragpress.pipelines.safe_yaml import YamlRefused, load_bounded

# ragpress's component packages; Haystack's own namespaces are on Haystack's default allowlist.
RAGPRESS_MODULES = ("ragpress.indexers", "ragpress.pipelines", "ragpress.rerankers", "ragpress.pruners",
                    "ragpress.generators")
# Type names of pipelines saved before the one namespace (``indexers.embedders.QueryEmbedder``): read as the same
# component under its current name, so a stored version keeps working.
LEGACY_TYPE = re.compile(r"^(\s*type:\s*['\"]?)(indexers|pipelines|rerankers|pruners|generators)\.", re.MULTILINE)
HAYSTACK_MODULES = ("haystack", "haystack_integrations")
BUILTIN_PIPELINES = ("ingestion", "query", "plain", "pruned", "kv", "remote")


@dataclass(frozen=True)
class PipelineProblem:
    message: str
    line: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "field": self.field}


class PipelineInvalid(ValueError):
    """The YAML cannot become a pipeline; ``problems`` say where and why."""

    def __init__(self, problems: list[PipelineProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(_describe(p) for p in problems))


def _describe(problem: PipelineProblem) -> str:
    where = []
    if problem.line is not None:
        where.append(f"line {problem.line}")
    if problem.field:
        where.append(problem.field)
    return (" at " + ", ".join(where) + ": " if where else "") + problem.message


def is_allowed_type(type_name: str) -> bool:
    module = type_name.rsplit(".", 1)[0] if "." in type_name else ""
    return any(module == root or module.startswith(root + ".") for root in RAGPRESS_MODULES + HAYSTACK_MODULES)


PIPELINE_KEYS = frozenset({"components", "connections", "metadata", "max_runs_per_component",
                           "connection_type_validation"})
COMPONENT_KEYS = frozenset({"type", "init_parameters"})


def parse_yaml(text: str) -> dict[str, Any]:
    """Parse within bounds (``pipelines.safe_yaml``) and check the shape; raise PipelineInvalid with line numbers.
    Pre-namespace type names are read as their current ones (``current_type_names``)."""
    try:
        data = load_bounded(current_type_names(text))
    except YamlRefused as exc:
        raise PipelineInvalid([PipelineProblem(str(exc), exc.line)]) from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        raise PipelineInvalid([PipelineProblem("a pipeline needs a 'components' mapping", 1, "components")])
    problems = [PipelineProblem(f"unknown top-level field '{key}'; a pipeline has {', '.join(sorted(PIPELINE_KEYS))}",
                                line_of(text, f"{key}:"), key) for key in sorted(data.keys() - PIPELINE_KEYS)]
    problems += _connection_problems(text, data.get("connections"))
    for name, spec in data["components"].items():
        problems += _component_problems(text, name, spec)
    if problems:
        raise PipelineInvalid(problems)
    return data


def _component_problems(text: str, name: str, spec: Any) -> list[PipelineProblem]:
    field = f"components.{name}"
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        return [PipelineProblem("each component needs a 'type'", line_of(text, name), f"{field}.type")]
    type_name = spec["type"]
    problems = [PipelineProblem(f"unknown field '{key}'; a component has 'type' and 'init_parameters'",
                                line_of(text, f"{key}:", after=f"{name}:"), f"{field}.{key}")
                for key in sorted(spec.keys() - COMPONENT_KEYS)]
    if not isinstance(spec.get("init_parameters") or {}, dict):
        problems.append(PipelineProblem("'init_parameters' must be a mapping of parameter names to values",
                                        line_of(text, "init_parameters:", after=f"{name}:"),
                                        f"{field}.init_parameters"))
    if not is_allowed_type(type_name):
        problems.append(PipelineProblem(
            f"component type '{type_name}' is not allowed: only ragpress's "
            f"({', '.join(RAGPRESS_MODULES)}) and Haystack's components can be used",
            line_of(text, type_name), f"{field}.type"))
    return problems


def _connection_problems(text: str, connections: Any) -> list[PipelineProblem]:
    if connections is None:
        return []
    wrong = PipelineProblem("'connections' must be a list of {sender: component.output, receiver: "
                            "component.input}", line_of(text, "connections:"), "connections")
    if not isinstance(connections, list):
        return [wrong]
    fine = all(isinstance(c, dict) and c.keys() == {"sender", "receiver"}
               and all(isinstance(v, str) for v in c.values()) for c in connections)
    return [] if fine else [wrong]


def line_of(text: str, needle: str, after: str | None = None) -> int | None:
    """The first line holding ``needle`` (after the first line holding ``after``, when given: a parameter's line
    inside its component's block)."""
    start = (line_of(text, after) or 0) if after is not None else 0
    for number, line in enumerate(text.splitlines(), start=1):
        if number > start and needle in line:
            return number
    return None


def current_type_names(text: str) -> str:
    """The YAML with pre-namespace component types renamed (``indexers.x.Y`` -> ``ragpress.indexers.x.Y``);
    line numbers are unchanged, so problems still point at the user's lines."""
    return LEGACY_TYPE.sub(r"\1ragpress.\2.", text)


def load_pipeline(text: str) -> Pipeline:
    """Build a Haystack pipeline from YAML text, refusing anything outside the allowlist."""
    text = current_type_names(text)
    parse_yaml(text)
    try:
        return Pipeline.loads(text, allowed_modules=[*RAGPRESS_MODULES])
    except (DeserializationError, PipelineError, TypeError, ValueError, KeyError) as exc:
        raise PipelineInvalid([PipelineProblem(_clean(exc))]) from None


def _clean(exc: Exception) -> str:
    message = str(exc).strip() or exc.__class__.__name__
    return message.splitlines()[0][:500] if len(message) > 500 else message


def builtin_yaml(name: str) -> str:
    if name not in BUILTIN_PIPELINES:
        raise KeyError(name)
    return resources.files("ragpress.pipelines").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
