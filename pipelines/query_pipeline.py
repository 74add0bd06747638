"""A query pipeline as the service runs it: its components by role, the variant a ``generate: false`` query runs,
where a request's ``top_k`` goes, the init parameters it sets above the server's ceilings, and its stage timings.

What a component does comes from its ``role`` (``ragpress.base.roles``; Haystack's own components take theirs from
``ragpress.pipelines.capabilities``), never from its class name, so a component of any name takes part by
declaring its role.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from haystack import Pipeline
from haystack.core.errors import PipelineRuntimeError
from haystack.errors import FilterError

from ragpress.base import schema
from ragpress.base.limits import over_ceiling
from ragpress.base.roles import Role
from ragpress.generators.remote_generator import RemoteGeneratorError
from ragpress.pipelines.capabilities import SERVER_INPUTS, role_of
from ragpress.pipelines.loader import PipelineInvalid
from ragpress.pipelines.param_types import value_problem
from ragpress.pipelines.registry import CeilingExcess, PipelineRegistry, ceiling_excesses, validate
from ragpress.pipelines.stage_timer import timed_run
from ragpress.pipelines.subgraph import inputs_for, without

# Pipeline inputs the server sets; a request's params can never override them.
RESERVED_INPUTS = frozenset({"query", "text", "filters"}) | SERVER_INPUTS
# What only an answer needs: generators, and the gates that decide whether to answer at all (a ``generate: false``
# query asks for the ranked documents, which a refusal would empty).
ANSWER_ROLES = frozenset({Role.GENERATOR, Role.GATE})
# Where a request's ``top_k`` applies: the rankers and pruners when the pipeline has them (so they choose from the
# retriever's wider pool), otherwise the retrievers.
TOP_K_ROLES = (frozenset({Role.RANKER, Role.PRUNER}), frozenset({Role.RETRIEVER}))
# The stages a response times; a generator's time to first token is reported by the generator itself.
STAGES: Mapping[Role, str] = {Role.EMBEDDER: "retrieve", Role.RETRIEVER: "retrieve", Role.EXPANDER: "retrieve",
                              Role.RANKER: "rerank", Role.PRUNER: "prune"}
PIPELINES_KEPT_PER_THREAD = 16


class InvalidRequest(ValueError):
    """A query the pipeline cannot run as asked (unknown params, malformed filters); the message says what to fix."""


@dataclass
class QueryRequest:
    query: str
    top_k: int | None = None
    generate: bool = True
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    filters: dict[str, Any] | None = None
    pipeline: str = "query"


@dataclass(frozen=True)
class QueryRun:
    """A finished run: every component's outputs, in run order, and each stage's wall time (ms)."""

    outputs: dict[str, Any]
    stage_ms: dict[str, float]


@dataclass(frozen=True)
class _Variant:
    pipeline: Pipeline
    components: frozenset[str]
    top_k_targets: tuple[str, ...]


class QueryPipeline:
    """A loaded query pipeline with its retrieval-only variant for ``generate: false`` queries.

    The retrieval variant is warmed up at once; the whole pipeline on its first run. So a server whose generator
    model is missing still answers ``generate: false`` queries, and a query that generates is refused with the
    command that fetches the model (and succeeds once it is fetched, without a restart).

    Usage:
        >>> query = QueryPipeline(pipeline, "pipeline 'query' version 0")
        >>> query.check(QueryRequest("When does it open?", top_k=3), limits)
        >>> query.run(QueryRequest("When does it open?", top_k=3), Scope("default", "docs")).outputs
    """

    def __init__(self, pipeline: Pipeline, label: str, over_ceiling: Iterable[CeilingExcess] = ()) -> None:
        """
        :param pipeline: a validated pipeline, not yet run.
        :param label: how messages name it, e.g. ``pipeline 'query' version 3``.
        :param over_ceiling: its init parameters above the server's ceilings; a request runs only if it sets
            each of them lower or does not run its component.
        """
        self.label = label
        self.over_ceiling = tuple(over_ceiling)
        self._roles = {name: role_of(type(component)) for name, component in pipeline.walk()}
        answer_stages = set(self.components_with(*ANSWER_ROLES))
        self._full = self._variant(pipeline)
        self._retrieval = self._variant(without(pipeline, answer_stages)) if answer_stages else self._full
        self._retrieval.pipeline.warm_up()

    def components_with(self, *roles: Role) -> list[str]:
        """The names of the components that have one of ``roles``, in the pipeline's order."""
        return [name for name, role in self._roles.items() if role in roles]

    def check(self, request: QueryRequest, limits: Mapping[str, int]) -> None:
        """Refuse, with what to change, a request this pipeline cannot run as asked or that asks more than the
        server's ``limits``, before anything runs."""
        problem = over_ceiling("top_k", request.top_k, limits)
        if problem is not None:
            raise InvalidRequest(f"top_k: {problem}")
        self._check_params(request.params, limits)
        unresolved = [e for e in self.over_ceiling if not self._overrides(request, e)]
        if unresolved:
            raise InvalidRequest(f"{self.label} asks more than this server allows ({unresolved[0].field}: "
                                 f"{unresolved[0].message}); lower it in the request's top_k or params where the "
                                 f"component takes it at query time, or save a version within it.")

    def run(self, request: QueryRequest, scope: schema.Scope,
            on_token: Callable[[str], None] | None = None) -> QueryRun:
        """Run the variant ``request`` asks for with the server's inputs bound (the scope can never come from the
        request); ``check`` it first. A caller's mistake is raised as InvalidRequest."""
        variant = self._variant_for(request.generate)
        data = _inputs(variant, request, scope, on_token)
        with timed_run() as timings:
            try:
                outputs = variant.pipeline.run(data, include_outputs_from=set(variant.components))
            except PipelineRuntimeError as exc:
                reported = _reported_error(exc, request)
                if reported is None:
                    raise
                raise reported from None
        return QueryRun(outputs, self._stage_ms(timings))

    def _variant_for(self, generate: bool) -> _Variant:
        """What a query runs: the whole pipeline, or without its answer stages when it does not generate."""
        return self._full if generate else self._retrieval

    def _variant(self, pipeline: Pipeline) -> _Variant:
        sockets = pipeline.inputs()
        takes_top_k = [name for name, _ in pipeline.walk() if "top_k" in sockets.get(name, {})]
        targets = next((found for roles in TOP_K_ROLES
                        if (found := tuple(n for n in takes_top_k if self._roles[n] in roles))), ())
        return _Variant(pipeline, frozenset(name for name, _ in pipeline.walk()), targets)

    def _overrides(self, request: QueryRequest, excess: CeilingExcess) -> bool:
        """Whether ``request`` does not run ``excess``'s parameter at its stored value: it sets it (its ``top_k``
        or ``params``, both held to the ceilings), or the component does not run (the answer stages of a
        ``generate: false`` query)."""
        variant = self._variant_for(request.generate)
        given = request.params.get(excess.component, {}).get(excess.parameter)
        # null or 0 is no override: the components fall back to their stored value for either
        return (excess.component not in variant.components
                or (given is not None and given != 0)
                or (excess.parameter == "top_k" and request.top_k is not None
                    and excess.component in variant.top_k_targets))

    def _check_params(self, params: dict[str, dict[str, Any]], limits: Mapping[str, int]) -> None:
        """Refuse ``params`` naming a component the pipeline lacks, an input that is connected, unknown or the
        server's to set (saying what could be set instead), or a value above the server's ceiling for it."""
        components = list(self._roles)
        sockets = self._full.pipeline.inputs()
        for name, values in params.items():
            if name not in components:
                raise InvalidRequest(f"params: the pipeline has no component '{name}'; "
                                     f"its components are {', '.join(components)}.")
            settable = sorted(set(sockets.get(name, {})) - RESERVED_INPUTS)
            for key in values:
                if key == "filters":
                    raise InvalidRequest(f"params.{name}.filters: give filters in the request's `filters` field.")
                if key in RESERVED_INPUTS:
                    raise InvalidRequest(f"params.{name}.{key} is set by the server and cannot be overridden.")
                if key not in settable:
                    raise InvalidRequest(f"params.{name}.{key}: '{name}' takes no such input at query time; "
                                         f"it takes {', '.join(settable) or 'none'}.")
                problem = (value_problem(values[key], sockets[name][key]["type"])
                           or over_ceiling(key, values[key], limits))
                if problem is not None:
                    raise InvalidRequest(f"params.{name}.{key}: {problem}")

    def _stage_ms(self, timings: Mapping[str, float]) -> dict[str, float]:
        stages = dict.fromkeys(("retrieve", "rerank", "prune"), 0.0)
        for name, role in self._roles.items():
            if role in STAGES:
                stages[STAGES[role]] += timings.get(name, 0.0)
        return {stage: round(ms, 1) for stage, ms in stages.items()}


class QueryPipelines:
    """A tenant's saved query pipelines as QueryPipelines, each built once per serving thread (Haystack pipelines
    keep per-run state) and version: a newly saved version has a new key, so the next request uses it."""

    def __init__(self, registry: PipelineRegistry, kept_per_thread: int = PIPELINES_KEPT_PER_THREAD) -> None:
        self._registry = registry
        self._kept_per_thread = kept_per_thread
        self._local = threading.local()

    def get(self, tenant: str, name: str) -> QueryPipeline:
        saved = self._registry.get(tenant, name)
        if not hasattr(self._local, "built"):
            self._local.built = OrderedDict()
        built: OrderedDict[tuple[str, str, int], QueryPipeline] = self._local.built
        key = (tenant, name, saved["version"])
        if key in built:
            built.move_to_end(key)
        else:
            built[key] = self._build(name, saved["version"], saved["yaml"])
            while len(built) > self._kept_per_thread:  # tenants can save any number of versions
                built.popitem(last=False)
        return built[key]

    def _build(self, name: str, version: int, text: str) -> QueryPipeline:
        label = f"pipeline '{name}' version {version}"
        try:  # a version saved before today's rules is held to them too
            pipeline, _graph = validate(text, models=self._registry.models)
        except PipelineInvalid as exc:
            raise InvalidRequest(f"{label} cannot run on this server: {exc}. Save a new version.") from None
        # A version saved before the ceilings existed or were lowered, or a built-in shipped above what its
        # operator allows, runs only where the request overrides the excess (checked per query).
        return QueryPipeline(pipeline, label, ceiling_excesses(text, self._registry.limits))


def _inputs(variant: _Variant, request: QueryRequest, scope: schema.Scope,
            on_token: Callable[[str], None] | None) -> dict[str, dict[str, Any]]:
    values: dict[str, Any] = {"query": request.query, "text": request.query, "scope": scope}
    if request.filters is not None:
        values["filters"] = request.filters
    if on_token is not None:
        values["streaming_callback"] = lambda chunk: on_token(chunk.content)
    data = inputs_for(variant.pipeline, values)
    if request.top_k is not None:
        for name in variant.top_k_targets:
            data.setdefault(name, {})["top_k"] = request.top_k
    for component, params in request.params.items():
        if component in variant.components:  # a generate: false run drops the answer stages, and their params
            data.setdefault(component, {}).update(params)
    return data


def _reported_error(exc: PipelineRuntimeError, request: QueryRequest) -> Exception | None:
    """What to report for a failed run: the caller's own mistake (a malformed filter, a runtime value a
    component refuses) as such, a remote generator's failure as the server's (502); None for anything else,
    which stays an internal error with its full cause in the log."""
    cause = exc.__cause__
    if isinstance(cause, RemoteGeneratorError):
        return cause
    if isinstance(cause, FilterError):
        return InvalidRequest(f"filters: {cause}")
    if isinstance(cause, ValueError) and exc.component_name in request.params:
        return InvalidRequest(f"params.{exc.component_name}: {cause}")
    return None
