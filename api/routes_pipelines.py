"""Pipeline YAML editing: get, save (validated first; the last 100 versions kept), delete, validate, roll back."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from ragpress.api import auth, errors
from ragpress.api.dependencies import service
from ragpress.api.openapi import request_body, text_body
from ragpress.api.schemas import (
    MAX_QUERY_CHARS,
    NAME_PATTERN,
    PipelineDeleted,
    PipelineList,
    PipelineOut,
    PipelineValidation,
    PipelineVersions,
    RollbackIn,
)
from ragpress.base.input_limits import MAX_VERSION
from ragpress.pipelines.loader import PipelineInvalid

logger = logging.getLogger(__name__)
PipelineName = Path(..., pattern=NAME_PATTERN)
# Versions are SQL integers: a larger number would overflow the registry's query instead of matching nothing.
Version = Query(None, ge=0, le=MAX_VERSION)
YAML_BODY = text_body("application/yaml", "The pipeline as Haystack YAML (see GET /v1/pipelines/query), UTF-8.")


async def _yaml_body(request: Request) -> str:
    raw = await request.body()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.ApiError(400, "invalid_utf8", "The pipeline YAML is not valid UTF-8.") from None


def pipeline_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

    @router.get("", response_model=PipelineList)
    async def list_pipelines(request: Request, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"pipelines": await run_in_threadpool(service(request).pipelines, tenant)}

    @router.get("/{name}", response_model=PipelineOut)
    async def get_pipeline(request: Request, name: str = PipelineName, version: int | None = Version,
                           tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await run_in_threadpool(service(request).pipeline, tenant, name, version)

    @router.put("/{name}", response_model=PipelineOut, openapi_extra=YAML_BODY)
    async def put_pipeline(request: Request, name: str = PipelineName,
                           tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        text = await _yaml_body(request)
        return await run_in_threadpool(service(request).save_pipeline, tenant, name, text)

    @router.delete("/{name}", response_model=PipelineDeleted)
    async def delete_pipeline(request: Request, name: str = PipelineName,
                              tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        await run_in_threadpool(service(request).delete_pipeline, tenant, name)
        return {"deleted": name}

    @router.get("/{name}/versions", response_model=PipelineVersions)
    async def versions(request: Request, name: str = PipelineName,
                       tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"versions": await run_in_threadpool(service(request).pipeline_versions, tenant, name)}

    @router.post("/{name}/rollback", response_model=PipelineOut, openapi_extra=request_body(RollbackIn))
    async def rollback(request: Request, name: str = PipelineName,
                       tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        body = await errors.parse_body(request, RollbackIn)
        return await run_in_threadpool(service(request).rollback_pipeline, tenant, name, body.version)

    @router.post("/{name}/validate", response_model=PipelineValidation, response_model_exclude_unset=True,
                 openapi_extra=YAML_BODY)
    async def validate_pipeline(request: Request, name: str = PipelineName, dry_run: bool = False,
                                collection: str | None = None, query: str | None = None,
                                tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        text = await _yaml_body(request)
        try:
            graph = await run_in_threadpool(service(request).validate_pipeline, text)
        except PipelineInvalid as exc:
            return {"valid": False, "problems": [p.as_dict() for p in exc.problems], "graph": None, "dry_run": None}
        result: dict[str, Any] = {"valid": True, "problems": [], "graph": graph, "dry_run": None}
        if dry_run:
            if not collection or not query or len(query) > MAX_QUERY_CHARS:
                raise errors.ApiError(422, "invalid_request", "A dry run needs `collection` and `query` (at most "
                                      f"{MAX_QUERY_CHARS:,} characters).")
            try:
                result["dry_run"] = await run_in_threadpool(service(request).dry_run, tenant, collection, text, query)
            except Exception as exc:  # a dry run reports what failed instead of failing the request
                result.update(valid=False, problems=[{"message": f"dry run failed: {_dry_run_error(exc)}",
                                                      "line": None, "field": None}])
        return result

    return router


def _dry_run_error(exc: Exception) -> str:
    """Messages written for the caller are shown; anything else stays in the server log, since an internal
    error's text can name the server's files or settings."""
    if errors.known_error_code(exc) is not None:
        return str(exc)
    logger.error("dry run failed: %s", exc.__class__.__name__, exc_info=exc)
    return "an internal error; the server log has details"
