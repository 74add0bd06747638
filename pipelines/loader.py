"""Load pipeline YAML safely: only ragpress's own and Haystack's components can ever be instantiated.

The YAML is parsed with a safe loader first (so ``!!python/...`` tags are refused before anything else),
every component type is checked against the allowlist, and only then is the YAML handed to Haystack with
that same allowlist and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from haystack import Pipeline
from haystack.core.errors import DeserializationError, PipelineError

# ragpress's component packages; Haystack's own namespaces are on Haystack's default allowlist.
RAGPRESS_MODULES = ("indexers", "pipelines", "rerankers", "pruners", "generators")
HAYSTACK_MODULES = ("haystack", "haystack_integrations")
BUILTIN_PIPELINES = ("ingestion", "query", "pruned", "kv", "remote")


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


def parse_yaml(text: str) -> dict[str, Any]:
    """Parse with the safe loader and check the top-level shape; raise PipelineInvalid with line numbers."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineInvalid([PipelineProblem(f"YAML syntax error: {problem}", line)]) from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        raise PipelineInvalid([PipelineProblem("a pipeline needs a 'components' mapping", 1, "components")])
    problems = []
    for name, spec in data["components"].items():
        field = f"components.{name}.type"
        type_name = spec.get("type") if isinstance(spec, dict) else None
        if not isinstance(type_name, str):
            problems.append(PipelineProblem("each component needs a 'type'", line_of(text, name), field))
        elif not is_allowed_type(type_name):
            problems.append(PipelineProblem(
                f"component type '{type_name}' is not allowed: only ragpress's "
                f"({', '.join(RAGPRESS_MODULES)}) and Haystack's components can be used",
                line_of(text, type_name), field,
            ))
    if problems:
        raise PipelineInvalid(problems)
    return data


def line_of(text: str, needle: str, after: str | None = None) -> int | None:
    """The first line holding ``needle`` (after the first line holding ``after``, when given: a parameter's line
    inside its component's block)."""
    start = (line_of(text, after) or 0) if after is not None else 0
    for number, line in enumerate(text.splitlines(), start=1):
        if number > start and needle in line:
            return number
    return None


def load_pipeline(text: str) -> Pipeline:
    """Build a Haystack pipeline from YAML text, refusing anything outside the allowlist."""
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
    return resources.files("pipelines").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
