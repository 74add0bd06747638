"""A pipeline without one of its stages, for ``ragpress eval --ablate``: what each stage is worth on your data.

A stage that documents pass through (expander, reranker, pruner, gate) is removed and its neighbours connected.
A gate right after a pruner goes with it: its floor is a level of the pruner's relevance scores, and on the scores
retrieval gives (fused ranks, cosines) it would refuse nearly everything. Two stages cannot simply go, and are
replaced by what a pipeline has without them: a hybrid retriever becomes a dense one, and a KV-cache generator
becomes the sequential generator that re-reads its passages.
"""

from __future__ import annotations

from typing import Any

import yaml

from ragpress.pipelines.loader import parse_yaml

KV_GENERATOR = "ragpress.generators.kv_generator.KVCacheGenerator"
SEQUENTIAL_GENERATOR = "ragpress.generators.local_generator.LocalGenerator"
PRUNER = "ragpress.pruners.component.ProvencePruner"
GATE = "ragpress.rerankers.relevance_gate.RelevanceGate"
# what the sequential generator shares with the KV one
SHARED_GENERATOR_SETTINGS = ("model", "max_new_tokens", "max_context_tokens", "system_prompt", "device")


class CannotAblate(ValueError):
    """Nothing passes through the stage; the message names the stages that can go."""


class StageMissing(CannotAblate):
    """The pipeline has no such stage."""


def ablated(text: str, stage: str) -> str:
    """The pipeline YAML ``text`` without ``stage`` (a component name), as YAML."""
    data = parse_yaml(text)
    components: dict[str, Any] = data["components"]
    if stage not in components:
        raise StageMissing(f"the pipeline has no stage {stage!r}; its stages: {', '.join(components)}.")
    spec = components[stage]
    params = spec.get("init_parameters") or {}
    if spec.get("type") == KV_GENERATOR:
        kept = {k: params[k] for k in SHARED_GENERATOR_SETTINGS if k in params}
        components[stage] = {"type": SEQUENTIAL_GENERATOR, "init_parameters": kept}
    elif params.get("hybrid"):
        components[stage] = {**spec, "init_parameters": {**params, "hybrid": False}}
    else:
        gates = [c["receiver"].split(".", 1)[0] for c in data.get("connections") or []
                 if c["sender"].split(".", 1)[0] == stage and spec.get("type") == PRUNER]
        for name in [stage, *(g for g in gates if components.get(g, {}).get("type") == GATE)]:
            data["connections"] = _bypassed(data.get("connections") or [], name, removable(data))
            del components[name]
    return yaml.safe_dump(data, sort_keys=False)


def removable(data: dict[str, Any]) -> list[str]:
    """The stages ``--ablate`` can take out or replace in the parsed pipeline ``data``."""
    connections = data.get("connections") or []
    found = []
    for name, spec in data["components"].items():
        params = spec.get("init_parameters") or {}
        if spec.get("type") == KV_GENERATOR or params.get("hybrid") or _pass_through(connections, name):
            found.append(name)
    return found


def _pass_through(connections: list[dict[str, str]], stage: str) -> str | None:
    """The socket documents enter and leave ``stage`` by, when one socket name does both."""
    inputs = {c["receiver"].split(".", 1)[1] for c in connections if c["receiver"].split(".", 1)[0] == stage}
    outputs = {c["sender"].split(".", 1)[1] for c in connections if c["sender"].split(".", 1)[0] == stage}
    shared = inputs & outputs
    return min(shared) if shared else None


def _bypassed(connections: list[dict[str, str]], stage: str, can_go: list[str]) -> list[dict[str, str]]:
    socket = _pass_through(connections, stage)
    if socket is None:
        raise CannotAblate(f"nothing passes through {stage!r}, so the pipeline cannot run without it; stages that "
                           f"can go: {', '.join(can_go) or 'none'}.")
    into = [c["sender"] for c in connections if c["receiver"] == f"{stage}.{socket}"]
    out_of = [c["receiver"] for c in connections if c["sender"] == f"{stage}.{socket}"]
    kept = [c for c in connections if stage not in (c["sender"].split(".", 1)[0], c["receiver"].split(".", 1)[0])]
    return kept + [{"sender": s, "receiver": r} for s in into for r in out_of]
