"""Run a pipeline without some of its components (and everything downstream of them).

Used where a step must happen elsewhere or not at all: a worker that does not own the index runs the
ingestion pipeline up to the writer; a query with ``generate: false`` stops before the generator.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
from haystack import Pipeline

from ragpress.pipelines.loader import load_pipeline


def without(pipeline: Pipeline, excluded: set[str]) -> Pipeline:
    """A new pipeline of the same definition minus ``excluded`` and their descendants, warmed up.

    Built from the definition rather than by lending component instances, because connecting an
    instance into a second pipeline would change its sockets in the first; models are shared anyway."""
    dropped = set(excluded)
    for name in excluded:
        dropped |= nx.descendants(pipeline.graph, name)
    partial = load_pipeline(pipeline.dumps())
    for name in dropped:
        partial.remove_component(name)
    partial.warm_up()
    return partial


def upstream_of(pipeline: Pipeline, component: str) -> set[str]:
    return {sender for sender, _receiver in pipeline.graph.in_edges(component)}


def components_of_type(pipeline: Pipeline, kind: type) -> list[str]:
    return [name for name, comp in pipeline.walk() if isinstance(comp, kind)]


def inputs_for(pipeline: Pipeline, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give every component input socket named in ``values`` its value (e.g. query, text, scope)."""
    data: dict[str, dict[str, Any]] = {}
    for name, sockets in pipeline.inputs().items():
        for socket, value in values.items():
            if socket in sockets:
                data.setdefault(name, {})[socket] = value
    return data
