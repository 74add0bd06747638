"""Operations: the console redirect, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragpress.api.schemas import Status

METRICS = {"description": "Prometheus text exposition format.", "content": {"text/plain": {
    "schema": {"type": "string"}, "example": 'ragpress_queries_total{pipeline="query"} 12.0\n'}}}


def ops_routes() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @router.get("/healthz", response_model=Status)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=Status,
                responses={503: {"model": Status, "description": "Still starting (or stopping)."}})
    async def readyz(request: Request) -> JSONResponse:
        ready = getattr(request.app.state, "ready", False)
        return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=PlainTextResponse, responses={200: METRICS})
    async def prometheus() -> PlainTextResponse:
        # off the event loop: the KV store's size is read from disk (or Redis) at scrape time
        text = await run_in_threadpool(generate_latest)
        return PlainTextResponse(text.decode(), media_type=CONTENT_TYPE_LATEST)

    return router
