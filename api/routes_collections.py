"""A tenant's collections: list them, create one or set its options, look at one, delete one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from ragpress.api import auth, errors
from ragpress.api.dependencies import Name, service
from ragpress.api.openapi import request_body
from ragpress.api.schemas import CollectionDeleted, CollectionDetail, CollectionIn, CollectionList


def collection_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/collections", tags=["collections"])

    @router.get("", response_model=CollectionList)
    async def list_collections(request: Request, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"collections": await run_in_threadpool(service(request).collections, tenant)}

    @router.put("/{collection}", response_model=CollectionDetail, openapi_extra=request_body(CollectionIn))
    async def put_collection(request: Request, collection: str = Name,
                             tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        body = await errors.parse_body(request, CollectionIn)
        return await run_in_threadpool(service(request).set_collection_options, tenant, collection,
                                       body.kv_precompute)

    @router.get("/{collection}", response_model=CollectionDetail)
    async def get_collection(request: Request, collection: str = Name,
                             tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await run_in_threadpool(service(request).collection_details, tenant, collection)

    @router.delete("/{collection}", response_model=CollectionDeleted)
    async def delete_collection(request: Request, collection: str = Name,
                                tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        """Delete the collection: its documents, units, options and cached KV states; its queued documents are
        cancelled so none lands afterwards."""
        return await run_in_threadpool(service(request).delete_collection, tenant, collection)

    return router
