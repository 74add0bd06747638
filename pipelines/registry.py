"""Saved pipelines: the last 100 versions kept, per tenant; the built-in ones are read-only defaults.

A pipeline is validated (bounded YAML, the tenant rules of ``ragpress.pipelines.capabilities``, connections Haystack
accepts) before it is stored, so a bad edit never replaces a working version. Readers key their cached
pipeline objects by (name, version): a newly saved version is used by the next request without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from haystack import Pipeline
from sqlalchemy.engine import Connection, Engine

from ragpress.base.database import metadata
from ragpress.base.limits import over_ceiling
from ragpress.pipelines.capabilities import OfferedModels, graph_problems, offered_models, static_problems
from ragpress.pipelines.loader import (
    BUILTIN_PIPELINES,
    PipelineInvalid,
    PipelineProblem,
    builtin_yaml,
    current_type_names,
    line_of,
    load_pipeline,
    parse_yaml,
)

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
VERSIONS_KEPT = 100
MAX_PIPELINES_PER_TENANT = 100


class PipelineNotFound(LookupError):
    pass


def graph_of(pipeline: Pipeline) -> dict[str, list[dict[str, str]]]:
    nodes = [{"name": name, "type": type(comp).__module__ + "." + type(comp).__name__}
             for name, comp in pipeline.walk()]
    edges = [{"from": f"{s}.{d['from_socket'].name}", "to": f"{r}.{d['to_socket'].name}"}
             for s, r, d in pipeline.graph.edges(data=True)]
    return {"nodes": nodes, "edges": edges}


@dataclass(frozen=True)
class CeilingExcess:
    """An init parameter a pipeline sets above the server's cost ceiling for it (``ragpress.base.limits``)."""

    component: str
    parameter: str
    message: str

    @property
    def field(self) -> str:
        return f"components.{self.component}.init_parameters.{self.parameter}"


def ceiling_excesses(text: str, limits: Mapping[str, int]) -> list[CeilingExcess]:
    """The init parameters of the pipeline YAML ``text`` above the server's cost ceilings."""
    excesses = []
    for name, spec in parse_yaml(text)["components"].items():
        for parameter, value in sorted((spec.get("init_parameters") or {}).items()):
            message = over_ceiling(parameter, value, limits)
            if message is not None:
                excesses.append(CeilingExcess(name, parameter, message))
    return excesses


def ceiling_problems(text: str, limits: Mapping[str, int]) -> list[PipelineProblem]:
    """``ceiling_excesses`` as problems pointing at their lines."""
    return [PipelineProblem(e.message, line_of(text, f"{e.parameter}:", after=f"{e.component}:"), e.field)
            for e in ceiling_excesses(text, limits)]


def validate(text: str, limits: Mapping[str, int] | None = None,
             models: OfferedModels | None = None) -> tuple[Pipeline, dict[str, list[dict[str, str]]]]:
    """Build a tenant's pipeline from YAML (nothing is saved, nothing runs); raise PipelineInvalid with line and
    field. The rules are ``ragpress.pipelines.capabilities``'s; ``limits``: the server's ceilings on cost parameters
    (none when only the YAML's validity is asked); ``models``: the model names the server offers."""
    if not text.strip():
        raise PipelineInvalid([PipelineProblem("the pipeline YAML is empty", 1)])
    text = current_type_names(text)
    data = parse_yaml(text)
    problems = static_problems(text, data, offered_models() if models is None else models)
    problems += ceiling_problems(text, limits or {})
    if problems:
        raise PipelineInvalid(problems)
    pipeline = load_pipeline(text)
    if not list(pipeline.walk()):
        raise PipelineInvalid([PipelineProblem("a pipeline needs at least one component", 1, "components")])
    problems = graph_problems(text, pipeline)
    if problems:
        raise PipelineInvalid(problems)
    return pipeline, graph_of(pipeline)


class PipelineRegistry:
    """``limits``: the server's ceilings on cost parameters, which a saved pipeline must stay under; ``models``:
    the model names its pipelines may use (``ragpress.pipelines.capabilities.offered_models``)."""

    def __init__(self, engine: Engine, limits: Mapping[str, int] | None = None,
                 models: OfferedModels | None = None) -> None:
        self.engine = engine
        self.limits = dict(limits or {})
        self.models = offered_models() if models is None else models
        metadata.create_all(engine, tables=[pipeline_versions])

    def get(self, tenant: str, name: str, version: int | None = None) -> dict[str, Any]:
        row = self._row(tenant, name, version)
        if row is not None:
            return {"name": name, "version": row.version, "yaml": row.yaml, "builtin": False}
        if name in BUILTIN_PIPELINES and version in (None, BUILTIN_VERSION):  # a deleted override reverts here
            return {"name": name, "version": BUILTIN_VERSION, "yaml": builtin_yaml(name), "builtin": True}
        raise PipelineNotFound(f"No pipeline '{name}'" + (f" version {version}" if version is not None else "") + ".")

    def validate(self, text: str) -> tuple[Pipeline, dict[str, list[dict[str, str]]]]:
        return validate(text, self.limits, self.models)

    def save(self, tenant: str, name: str, text: str) -> dict[str, Any]:
        text = current_type_names(text)
        self.validate(text)
        with self.engine.begin() as conn:
            names = set(conn.execute(sa.select(pipeline_versions.c.name).distinct().where(
                pipeline_versions.c.tenant == tenant)).scalars())
            if name not in names and len(names) >= MAX_PIPELINES_PER_TENANT:
                raise PipelineInvalid([PipelineProblem(
                    f"a tenant may keep at most {MAX_PIPELINES_PER_TENANT} pipelines; delete one first")])
            _append(conn, tenant, name, text)
        return self.get(tenant, name)

    def delete(self, tenant: str, name: str) -> None:
        self.get(tenant, name)  # 404 when it does not exist
        with self.engine.begin() as conn:
            # A tombstone version: history stays, the name stops resolving (built-ins fall back to default).
            _append(conn, tenant, name, "", deleted=True)

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


def _append(conn: Connection, tenant: str, name: str, text: str, deleted: bool = False) -> None:
    """Add the next version; the oldest go past ``VERSIONS_KEPT``, so saving in a loop cannot grow the database
    without end."""
    this = sa.and_(pipeline_versions.c.tenant == tenant, pipeline_versions.c.name == name)
    latest = conn.execute(sa.select(sa.func.max(pipeline_versions.c.version)).where(this)).scalar() or 0
    conn.execute(pipeline_versions.insert().values(tenant=tenant, name=name, version=latest + 1, yaml=text,
                                                   deleted=deleted, created_at=datetime.now(UTC)))
    conn.execute(pipeline_versions.delete().where(this, pipeline_versions.c.version <= latest + 1 - VERSIONS_KEPT))
