"""The FastAPI application: REST contract v1 over a Service; each route group lives in its ``routes_*`` module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from ragpress.api import auth, docs_page, errors, metrics, openapi
from ragpress.api.body_limit import BodySizeLimit
from ragpress.api.dependencies import rate_limited
from ragpress.api.limits import Admission, RateLimiter
from ragpress.api.routes_admin import admin_routes
from ragpress.api.routes_chat import chat_routes
from ragpress.api.routes_collections import collection_routes
from ragpress.api.routes_documents import document_routes
from ragpress.api.routes_jobs import job_routes
from ragpress.api.routes_ops import ops_routes
from ragpress.api.routes_pipelines import pipeline_routes
from ragpress.api.routes_query import query_routes
from ragpress.base.settings import Settings, get_settings
from ragpress.service import Service

logger = logging.getLogger(__name__)
STATIC = FilePath(__file__).parent / "static"


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or Service(settings)
        await run_in_threadpool(svc.start)
        app.state.service = svc
        if not auth.keys_required(settings, svc.any_keys()):
            logger.warning("No API keys exist: serving without authentication, on localhost only. "
                           "Create one with `ragpress keys create --tenant NAME` to require keys.")
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await run_in_threadpool(svc.stop)

    app = FastAPI(title="ragpress", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Retrieval-augmented generation with pruning and cached KV states.")
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    # Generating queries hold a slot for seconds; retrieval-only ones for milliseconds, so they queue apart
    # and a burst of generation never makes a search wait.
    app.state.admission = {
        generate: Admission(settings.max_concurrent_queries, settings.max_queued_queries, settings.max_queue_wait_s)
        for generate in (True, False)
    }
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(metrics.RequestLog)
    errors.install(app)
    openapi.install(app)
    docs_page.install(app)  # served from the installed package: FastAPI's own page needs a CDN
    app.include_router(ops_routes())
    for router in (
        document_routes(settings),
        collection_routes(),
        job_routes(),
        query_routes(),
        pipeline_routes(),
        chat_routes(),
    ):
        app.include_router(router, dependencies=[Depends(rate_limited)])
    app.include_router(admin_routes())
    if STATIC.is_dir():
        app.mount("/console", StaticFiles(directory=STATIC, html=True), name="console")
    return app
