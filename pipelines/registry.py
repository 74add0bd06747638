"""Saved pipelines: every version kept, per tenant; the built-in ones are read-only defaults.

A pipeline is validated (safe YAML, allowlisted components, connections Haystack accepts) before it is
stored, so a bad edit never replaces a working version. Readers key their cached pipeline objects by
(name, version): a newly saved version is used by the next request without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from haystack import Pipeline
from sqlalchemy.engine import Engine

from generators.remote_generator import API_KEY_ENV as REMOTE_API_KEY_ENV
from pipelines.loader import (
    BUILTIN_PIPELINES,
    PipelineInvalid,
    PipelineProblem,
    builtin_yaml,
    line_of,
    load_pipeline,
    parse_yaml,
)
from ragpress.database import metadata
from ragpress.limits import over_ceiling

pipeline_versions = sa.Table(
    "pipeline_versions", metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("yaml", sa.Text, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

BUILTIN_VERSION = 0


class PipelineNotFound(LookupError):
    pass


def graph_of(pipeline: Pipeline) -> dict[str, list[dict[str, str]]]:
    nodes = [{"name": name, "type": type(comp).__module__ + "." + type(comp).__name__}
             for name, comp in pipeline.walk()]
    edges = [{"from": f"{s}.{d['from_socket'].name}", "to": f"{r}.{d['to_socket'].name}"}
             for s, r, d in pipeline.graph.edges(data=True)]
    return {"nodes": nodes, "edges": edges}


# Parameters that name server resources (an index, a KV store's path or URL, a remote generator's server and
# key): the server binds them, so a tenant's YAML cannot point a component at another index, wipe one
# (recreate_index), write elsewhere, or send the operator's API key (or requests) to a host of its choosing.
SERVER_BOUND_PARAMETERS = frozenset({"document_store", "store", "base_url", "api_key"})


# What a pipeline may still write for them: the server's own binding, as a dumped pipeline spells it
# (null, or the remote generator's default key variable), so saving a round-tripped pipeline works.
SERVER_DEFAULT_VALUES: dict[str, list[Any]] = {
    "api_key": [{"type": "env_var", "env_vars": [REMOTE_API_KEY_ENV], "strict": False}],
}


def parameter_problems(text: str, limits: Mapping[str, int]) -> list[PipelineProblem]:
    """Init parameters a tenant's pipeline may not set: the server's own bindings, and values above the
    server's cost ceilings (``ragpress.limits``)."""
    problems = []
    for name, spec in parse_yaml(text)["components"].items():
        given = spec.get("init_parameters") or {}
        for parameter, value in sorted(given.items()):
            if parameter in SERVER_BOUND_PARAMETERS:
                if value is None or value in SERVER_DEFAULT_VALUES.get(parameter, []):
                    continue
                message = f"'{parameter}' is set by the server and cannot be given in a pipeline"
            else:
                message = over_ceiling(parameter, value, limits)
                if message is None:
                    continue
            problems.append(PipelineProblem(message, line_of(text, f"{parameter}:", after=f"{name}:"),
                                            f"components.{name}.init_parameters.{parameter}"))
    return problems


def validate(text: str, limits: Mapping[str, int] | None = None) -> tuple[Pipeline, dict[str, list[dict[str, str]]]]:
    """Build the pipeline from YAML (nothing is saved); raise PipelineInvalid with line and field. ``limits``:
    the server's ceilings on cost parameters (none when only the YAML's validity is asked)."""
    if not text.strip():
        raise PipelineInvalid([PipelineProblem("the pipeline YAML is empty", 1)])
    problems = parameter_problems(text, limits or {})
    if problems:
        raise PipelineInvalid(problems)
    pipeline = load_pipeline(text)
    if not list(pipeline.walk()):
        raise PipelineInvalid([PipelineProblem("a pipeline needs at least one component", 1, "components")])
    return pipeline, graph_of(pipeline)


class PipelineRegistry:
    """``limits``: the server's ceilings on cost parameters, which a saved pipeline must stay under."""

    def __init__(self, engine: Engine, limits: Mapping[str, int] | None = None) -> None:
        self.engine = engine
        self.limits = dict(limits or {})
        metadata.create_all(engine, tables=[pipeline_versions])

    def get(self, tenant: str, name: str, version: int | None = None) -> dict[str, Any]:
        row = self._row(tenant, name, version)
        if row is not None:
            return {"name": name, "version": row.version, "yaml": row.yaml, "builtin": False}
        if name in BUILTIN_PIPELINES and version in (None, BUILTIN_VERSION):  # a deleted override reverts here
            return {"name": name, "version": BUILTIN_VERSION, "yaml": builtin_yaml(name), "builtin": True}
        raise PipelineNotFound(f"No pipeline '{name}'" + (f" version {version}" if version is not None else "") + ".")

    def save(self, tenant: str, name: str, text: str) -> dict[str, Any]:
        validate(text, self.limits)
        with self.engine.begin() as conn:
            latest = conn.execute(sa.select(sa.func.max(pipeline_versions.c.version)).where(
                pipeline_versions.c.tenant == tenant, pipeline_versions.c.name == name)).scalar() or 0
            conn.execute(pipeline_versions.insert().values(
                tenant=tenant, name=name, version=latest + 1, yaml=text, deleted=False, created_at=datetime.now(UTC)))
        return self.get(tenant, name)

    def delete(self, tenant: str, name: str) -> None:
        self.get(tenant, name)  # 404 when it does not exist
        with self.engine.begin() as conn:
            latest = conn.execute(sa.select(sa.func.max(pipeline_versions.c.version)).where(
                pipeline_versions.c.tenant == tenant, pipeline_versions.c.name == name)).scalar() or 0
            # A tombstone version: history stays, the name stops resolving (built-ins fall back to default).
            conn.execute(pipeline_versions.insert().values(
                tenant=tenant, name=name, version=latest + 1, yaml="", deleted=True, created_at=datetime.now(UTC)))

    def rollback(self, tenant: str, name: str, version: int) -> dict[str, Any]:
        return self.save(tenant, name, self.get(tenant, name, version)["yaml"])

    def versions(self, tenant: str, name: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pipeline_versions.c.version, pipeline_versions.c.created_at,
                                          pipeline_versions.c.deleted)
                                .where(pipeline_versions.c.tenant == tenant, pipeline_versions.c.name == name)
                                .order_by(pipeline_versions.c.version)).all()
        versions = [{"version": r.version, "created_at": r.created_at.isoformat(), "deleted": r.deleted} for r in rows]
        if name in BUILTIN_PIPELINES:
            versions.insert(0, {"version": BUILTIN_VERSION, "created_at": None, "deleted": False})
        if not versions:
            raise PipelineNotFound(f"No pipeline '{name}'.")
        return versions

    def list(self, tenant: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            names = [r.name for r in conn.execute(sa.select(pipeline_versions.c.name).distinct().where(
                pipeline_versions.c.tenant == tenant))]
        listed = []
        for name in sorted(set(names) | set(BUILTIN_PIPELINES)):
            try:
                found = self.get(tenant, name)
            except PipelineNotFound:
                continue
            listed.append({"name": name, "version": found["version"], "builtin": found["builtin"]})
        return listed

    def _row(self, tenant: str, name: str, version: int | None) -> Any:
        query = sa.select(pipeline_versions).where(pipeline_versions.c.tenant == tenant,
                                                   pipeline_versions.c.name == name)
        if version is not None:
            query = query.where(pipeline_versions.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(pipeline_versions.c.version.desc()).limit(1)).first()
        return None if row is None or row.deleted else row
