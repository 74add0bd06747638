"""What a tenant's pipeline may contain: vetted component types, each declaring what the server binds for it.

A module allowlist is not a security boundary: Haystack's own namespace holds file converters, URL
fetchers, OpenAI clients that send the server's key wherever ``api_base_url`` points, and template
components whose output can be wired into any socket. So a tenant's pipeline (saved, validated, dry-run or
queried) may use only the types below; writers, converters, fetchers and anything that takes a URL, a path or
a secret are the server's own and appear only in its built-in ingestion pipeline.

For each type the table names:

- ``server_inputs``: sockets only the server fills (the caller's scope, the streaming callback); no
  connection may feed them and no request ``params`` may set them;
- ``server_params``: init parameters the server binds (the index, the KV store, a remote generator's URL
  and key); a pipeline may leave them out or write the server's own default, nothing else;
- ``model_params``: init parameters naming a model, which must be one this server offers (a bundled model,
  the shipped adapters, or the models the operator configured), never a directory or a hub id: a path would
  let a tenant read the server's files as weights.

Nothing else in ``init_parameters`` may be a serialized object (a mapping with a ``type`` key): Haystack
deserializes such mappings into instances, secrets that read the server's environment included.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from haystack import Pipeline

from ragpress.base.models import REGISTRY
from ragpress.base.roles import Role
from ragpress.generators.remote_generator import API_KEY_ENV as REMOTE_API_KEY_ENV
from ragpress.pipelines.loader import PipelineProblem, line_of
from ragpress.pipelines.param_types import plain_type, value_problem
from ragpress.rerankers.fusion import DEFAULT_FUSION_NAME
from ragpress.rerankers.sufficiency import DEFAULT_SUFFICIENCY_NAME
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME as PRUNER_MODEL

MAX_COMPONENTS = 32
MAX_RUNS_PER_COMPONENT = 100
# A string parameter (a system prompt) is read on every query: long ones cost quadratic prefill time and memory.
MAX_TEXT_PARAMETER_CHARS = 2_000
# Parameters that size a forward pass, whatever component takes them: (lowest, highest) accepted.
# Parameters that size a forward pass or how long a component may hold a query slot, whatever component takes
# them: (lowest, highest) accepted.
PARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "batch_size": (1, 64), "max_length": (128, 512),
    "timeout_s": (1, 300), "max_retries": (0, 5), "backoff_s": (0, 30), "max_context_chars": (100, 200_000),
}
# At most this many components of each role: a query's cost is their sum, and one answer is returned.
ROLE_LIMITS: Mapping[Role, int] = {Role.GENERATOR: 1, Role.GATE: 1, Role.RANKER: 2, Role.PRUNER: 2,
                                   Role.EMBEDDER: 2, Role.RETRIEVER: 4, Role.EXPANDER: 2}


@dataclass(frozen=True)
class Capability:
    server_inputs: frozenset[str] = frozenset()
    server_params: frozenset[str] = frozenset()
    # init parameter -> the role of the models it may name (``offered_models``)
    model_params: Mapping[str, str] = field(default_factory=dict)
    # What the component does, for types that cannot declare it (Haystack's own); ragpress's declare ``role``.
    role: Role | None = None


_STREAMS = frozenset({"streaming_callback"})
_SCOPED = frozenset({"scope"})

TENANT_COMPONENTS: dict[str, Capability] = {
    "ragpress.indexers.embedders.QueryEmbedder": Capability(model_params={"model": "embedder"}),
    "ragpress.indexers.retrievers.ScopedEmbeddingRetriever": Capability(server_inputs=_SCOPED),
    "ragpress.indexers.context_expander.MultiScaleExpander": Capability(server_inputs=_SCOPED),
    "ragpress.rerankers.reranker.Reranker": Capability(model_params={"model": "reranker"}),
    "ragpress.rerankers.relevance_gate.RelevanceGate": Capability(model_params={"sufficiency": "sufficiency"}),
    "ragpress.pruners.component.ProvencePruner": Capability(model_params={"model": "pruner"}),
    "ragpress.generators.local_generator.LocalGenerator": Capability(server_inputs=_STREAMS,
                                                            model_params={"model": "generator"}),
    "ragpress.generators.kv_generator.KVCacheGenerator": Capability(
        server_inputs=_STREAMS, server_params=frozenset({"store"}), model_params={"model": "generator"}),
    # Its `model` is what the operator's remote server serves: a name sent to that server, not a file here.
    "ragpress.generators.remote_generator.RemoteGenerator": Capability(
        server_inputs=_STREAMS, server_params=frozenset({"base_url", "api_key"})),
    # Pure Haystack components: documents in, documents out; no file, network, environment, store or template.
    "haystack.components.joiners.document_joiner.DocumentJoiner": Capability(role=Role.JOINER),
    "haystack.components.rankers.lost_in_the_middle.LostInTheMiddleRanker": Capability(role=Role.RANKER),
    "haystack.components.rankers.meta_field.MetaFieldRanker": Capability(role=Role.RANKER),
}

# What a dumped pipeline writes for a server-bound parameter (so a round-tripped pipeline saves again).
SERVER_DEFAULTS: dict[str, list[Any]] = {
    "api_key": [{"type": "env_var", "env_vars": [REMOTE_API_KEY_ENV], "strict": False}],
    "device": ["auto"],
}
# Bound by the server on every component that has them: where models run is the operator's hardware. A tenant's
# `device: cpu` on a GPU server would load second copies of the models and answer slowly for everyone.
SERVER_PARAMS_EVERYWHERE = frozenset({"device"})

SERVER_INPUTS = frozenset().union(*(c.server_inputs for c in TENANT_COMPONENTS.values()))
# Inputs the server gives every component that has them (``QueryPipeline.run``).
SERVER_SUPPLIED = SERVER_INPUTS | {"query", "text"}

OfferedModels = Mapping[str, frozenset[str]]


def offered_models(embedder: str | None = None, generator: str | None = None) -> OfferedModels:
    """Per role, the model names a tenant's pipeline may name: the bundled ones, the shipped adapters, and the
    embedder and generator the operator configured. A role's own list only: a generator named as a reranker
    would load a second large model per component."""
    bundled = {role: {m.name for m in REGISTRY if m.role == role} for role in ("embedder", "generator")}
    return {
        "embedder": frozenset(bundled["embedder"] | ({embedder} if embedder else set())),
        "generator": frozenset(bundled["generator"] | ({generator} if generator else set())),
        "reranker": frozenset({DEFAULT_FUSION_NAME, PRUNER_MODEL}),
        "pruner": frozenset({PRUNER_MODEL}),
        "sufficiency": frozenset({DEFAULT_SUFFICIENCY_NAME}),
    }


def static_problems(text: str, data: Mapping[str, Any], models: OfferedModels) -> list[PipelineProblem]:
    """What the YAML asks that a tenant may not have, before anything is built from it."""
    components = data["components"]
    if len(components) > MAX_COMPONENTS:
        return [PipelineProblem(f"a pipeline may have at most {MAX_COMPONENTS} components", 1, "components")]
    problems = _pipeline_setting_problems(text, data) + _connection_problems(text, data, components)
    for name, spec in components.items():
        capability = TENANT_COMPONENTS.get(spec["type"])
        if capability is None:
            problems.append(PipelineProblem(
                f"component type '{spec['type']}' cannot be used in a tenant's pipeline: it is not one of the "
                f"vetted retrieval, ranking, pruning, gating and generation components ({', '.join(_short())}); "
                "see docs/security.md", line_of(text, spec["type"]), f"components.{name}.type"))
            continue
        annotations = _init_annotations(spec["type"])
        for parameter, value in sorted((spec.get("init_parameters") or {}).items()):
            message = _parameter_problem(capability, parameter, value, annotations.get(parameter, Any), models)
            if message is not None:
                problems.append(PipelineProblem(message, line_of(text, f"{parameter}:", after=f"{name}:"),
                                                f"components.{name}.init_parameters.{parameter}"))
    return problems


def _pipeline_setting_problems(text: str, data: Mapping[str, Any]) -> list[PipelineProblem]:
    problems = []
    if data.get("connection_type_validation", True) is not True:
        problems.append(PipelineProblem("a tenant's pipeline keeps Haystack's connection type checks on",
                                        line_of(text, "connection_type_validation:"), "connection_type_validation"))
    runs = data.get("max_runs_per_component", MAX_RUNS_PER_COMPONENT)
    if value_problem(runs, int) or not 1 <= runs <= MAX_RUNS_PER_COMPONENT:
        problems.append(PipelineProblem(f"max_runs_per_component must be a whole number from 1 to "
                                        f"{MAX_RUNS_PER_COMPONENT}", line_of(text, "max_runs_per_component:"),
                                        "max_runs_per_component"))
    return problems


def _connection_problems(text: str, data: Mapping[str, Any], components: Mapping[str, Any]) -> list[PipelineProblem]:
    problems = []
    for connection in data.get("connections") or []:
        receiver, _, socket = connection["receiver"].partition(".")
        capability = TENANT_COMPONENTS.get((components.get(receiver) or {}).get("type", ""), Capability())
        if socket in capability.server_inputs:
            problems.append(_fed_server_input(text, connection["sender"], receiver, socket))
    return problems


def _fed_server_input(text: str, sender: str, receiver: str, socket: str) -> PipelineProblem:
    message = f"'{receiver}.{socket}' is set by the server for every query; it cannot be connected from '{sender}'"
    return PipelineProblem(message, line_of(text, f"receiver: {receiver}"), f"connections.{receiver}.{socket}")


def _parameter_problem(capability: Capability, parameter: str, value: Any, annotation: Any,
                       models: OfferedModels) -> str | None:
    if parameter in capability.server_params | SERVER_PARAMS_EVERYWHERE:
        if value is None or value in SERVER_DEFAULTS.get(parameter, []):
            return None
        return f"'{parameter}' is set by the server and cannot be given in a pipeline"
    if any(isinstance(v, Mapping) and "type" in v for v in _nested(value)):
        return f"'{parameter}' holds a serialized object (a mapping with 'type'); give plain values only"
    if plain_type(annotation):
        wrong = value_problem(value, annotation)  # held to the type its component declares
        if wrong is not None:
            return f"'{parameter}' {wrong}"
    role = capability.model_params.get(parameter)
    if role is not None and value is not None and value not in models[role]:
        return (f"{role} model {value!r} is not offered by this server; use one of {', '.join(sorted(models[role]))} "
                "(directories and hub ids are for the operator's configuration, not a pipeline)")
    if isinstance(value, str) and len(value) > MAX_TEXT_PARAMETER_CHARS:
        return f"'{parameter}' is {len(value):,} characters; the limit is {MAX_TEXT_PARAMETER_CHARS:,}"
    low, high = PARAMETER_BOUNDS.get(parameter, (None, None))
    if low is not None and isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
        return f"'{parameter}' must be from {low} to {high} on this server"
    return None


@functools.cache
def _init_annotations(type_name: str) -> dict[str, Any]:
    """The declared types of a vetted component's init parameters (only vetted types are ever imported here)."""
    module, _, kind = type_name.rpartition(".")
    init = getattr(importlib.import_module(module), kind).__init__
    hints = typing.get_type_hints(init)
    return {name: hints.get(name, Any) for name in inspect.signature(init).parameters if name != "self"}


def graph_problems(text: str, pipeline: Pipeline) -> list[PipelineProblem]:
    """What the built graph does that a tenant's pipeline may not: feed a server input, loop, or leave an input
    nothing gives. Checked on the graph Haystack built, so a connection that names only the receiving component
    is caught too."""
    problems = []
    for sender, receiver, data in pipeline.graph.edges(data=True):
        socket = data["to_socket"].name
        if socket in _capability_of(pipeline, receiver).server_inputs:
            problems.append(_fed_server_input(text, sender, receiver, socket))
    if not nx.is_directed_acyclic_graph(pipeline.graph):
        problems.append(PipelineProblem("a tenant's pipeline cannot contain a loop", None, "connections"))
    roles = Counter(role_of(type(component)) for _, component in pipeline.walk())
    problems += [PipelineProblem(f"a tenant's pipeline may have at most {limit} {role} component"
                                 f"{'s' if limit > 1 else ''}; this one has {roles[role]}", None, "components")
                 for role, limit in ROLE_LIMITS.items() if roles[role] > limit]
    for name, sockets in pipeline.inputs().items():
        for socket in sorted(s for s, spec in sockets.items() if spec["is_mandatory"] and s not in SERVER_SUPPLIED):
            problems.append(PipelineProblem(f"'{name}.{socket}' is never given: connect it from another component",
                                            line_of(text, f"{name}:"), f"components.{name}"))
    return problems


def _capability_of(pipeline: Pipeline, name: str) -> Capability:
    return _capability(type(pipeline.get_component(name)))


def _capability(kind: type) -> Capability:
    return TENANT_COMPONENTS.get(f"{kind.__module__}.{kind.__name__}", Capability())


def role_of(kind: type) -> Role | None:
    """What components of type ``kind`` do: the ``role`` the class declares, or this table's for a type that cannot
    (None for a type that is neither ragpress's nor vetted)."""
    declared = getattr(kind, "role", None)
    return declared if isinstance(declared, Role) else _capability(kind).role


def _nested(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    for child in children:
        yield from _nested(child)


def _short() -> list[str]:
    return sorted(name.rsplit(".", 1)[1] for name in TENANT_COMPONENTS)
