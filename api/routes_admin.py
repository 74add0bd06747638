"""Administration (admin keys only): tenants, API keys and the embedded index's HNSW build."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from ragpress.api import auth, errors
from ragpress.api.dependencies import service
from ragpress.api.openapi import request_body
from ragpress.api.schemas import (
    IndexOptimized,
    KeyCreated,
    KeyIn,
    KeyList,
    KeyRevoked,
    TenantIn,
    TenantList,
    TenantOut,
)


def admin_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(auth.admin)])

    @router.get("/tenants", response_model=TenantList)
    async def list_tenants(request: Request) -> dict[str, Any]:
        return {"tenants": await run_in_threadpool(service(request).tenants)}

    @router.post("/tenants", status_code=201, response_model=TenantOut, openapi_extra=request_body(TenantIn))
    async def create_tenant(request: Request) -> dict[str, Any]:
        body = await errors.parse_body(request, TenantIn)
        await run_in_threadpool(service(request).create_tenant, body.name)
        return {"name": body.name}

    @router.get("/keys", response_model=KeyList)
    async def list_keys(request: Request) -> dict[str, Any]:
        return {"keys": await run_in_threadpool(service(request).keys)}

    @router.post("/keys", status_code=201, response_model=KeyCreated, openapi_extra=request_body(KeyIn))
    async def create_key(request: Request) -> dict[str, Any]:
        body = await errors.parse_body(request, KeyIn)
        try:
            key_id, key = await run_in_threadpool(service(request).create_key, body.tenant, body.admin, body.label)
        except ValueError as exc:  # the key store's own rule: admin, or exactly one tenant
            raise errors.ApiError(422, "invalid_request", str(exc)) from None
        return {"id": key_id, "key": key, "tenant": body.tenant, "admin": body.admin}

    @router.post("/index/optimize", response_model=IndexOptimized, response_model_exclude_unset=True)
    async def optimize_index(request: Request) -> dict[str, Any]:
        """Build the embedded engine's HNSW index (run after large ingests; queries wait while it runs)."""
        return await run_in_threadpool(service(request).optimize_index)

    @router.delete("/keys/{key_id}", response_model=KeyRevoked)
    async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        if not await run_in_threadpool(service(request).revoke_key, key_id):
            raise errors.ApiError(404, "not_found", f"No active key '{key_id}'.")
        return {"revoked": key_id}

    return router
