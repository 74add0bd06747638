"""The FastAPI application: REST contract v1 over a Service."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragpress.api import auth, errors, metrics
from ragpress.api.body_limit import BodySizeLimit
from ragpress.api.limits import Admission, RateLimiter
from ragpress.api.routes_pipelines import pipeline_routes
from ragpress.api.schemas import NAME_PATTERN, CollectionIn, DocumentsIn, JobAccepted, KeyIn, QueryIn, TenantIn
from ragpress.base.settings import Settings, get_settings
from ragpress.pipelines.query_pipeline import QueryRequest
from ragpress.service import IncomingDocument, Service

logger = logging.getLogger(__name__)
Name = Path(..., pattern=NAME_PATTERN, description="Letters, digits, '_', '.', '-'; at most 64.")
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

    app = FastAPI(title="ragpress", version="1", lifespan=lifespan,
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
    _ops_routes(app)
    app.include_router(_v1_routes(settings))
    app.include_router(pipeline_routes(), dependencies=[Depends(rate_limited)])
    app.include_router(_admin_routes())
    if STATIC.is_dir():
        app.mount("/console", StaticFiles(directory=STATIC, html=True), name="console")
    return app


def _service(request: Request) -> Service:
    return request.app.state.service


def rate_limited(request: Request) -> None:
    caller = auth.principal(request)
    key = caller.key_id if caller is not auth.ANONYMOUS else f"ip:{request.client.host if request.client else '-'}"
    request.app.state.limiter.check(key)


def _ops_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        ready = getattr(request.app.state, "ready", False)
        return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)


def _v1_routes(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(rate_limited)])

    @router.post("/collections/{collection}/documents", status_code=202, response_model=JobAccepted,
                 tags=["documents"])
    async def add_documents(request: Request, collection: str = Name,
                            tenant: str = Depends(auth.tenant)) -> dict[str, str]:
        body = await errors.parse_body(request, DocumentsIn)
        _check_sizes(body, settings)
        incoming = [IncomingDocument(text=d.text, id=d.id, meta=d.meta) for d in body.documents]
        job_id = await run_in_threadpool(_service(request).submit, tenant, collection, incoming, body.kv_precompute)
        metrics.DOCUMENTS_SUBMITTED.inc(len(incoming))
        return {"job_id": job_id}

    @router.get("/jobs/{job_id}", tags=["jobs"])
    async def get_job(request: Request, job_id: str, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).job, tenant, job_id)

    @router.get("/jobs", tags=["jobs"])
    async def list_jobs(request: Request, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"jobs": await run_in_threadpool(_service(request).jobs, tenant)}

    @router.post("/jobs/{job_id}/cancel", tags=["jobs"])
    async def cancel_job(request: Request, job_id: str, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).cancel, tenant, job_id)

    @router.delete("/collections/{collection}/documents/{doc_id}", tags=["documents"])
    async def delete_document(request: Request, doc_id: str, collection: str = Name,
                              tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        removed = await run_in_threadpool(_service(request).delete_document, tenant, collection, doc_id)
        return {"deleted": doc_id, "units_removed": removed}

    @router.get("/collections", tags=["collections"])
    async def list_collections(request: Request, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"collections": await run_in_threadpool(_service(request).collections, tenant)}

    @router.put("/collections/{collection}", tags=["collections"])
    async def put_collection(request: Request, collection: str = Name,
                             tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        body = await errors.parse_body(request, CollectionIn)
        return await run_in_threadpool(_service(request).set_collection_options, tenant, collection,
                                       body.kv_precompute)

    @router.get("/collections/{collection}", tags=["collections"])
    async def get_collection(request: Request, collection: str = Name,
                             tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).collection_details, tenant, collection)

    @router.post("/collections/{collection}/query", tags=["query"], response_model=None)
    async def query(request: Request, collection: str = Name, tenant: str = Depends(auth.tenant)) -> Any:
        body = await errors.parse_body(request, QueryIn)
        service = _service(request)
        await run_in_threadpool(service.collection, tenant, collection)  # 404 before any streaming starts
        call = QueryRequest(query=body.query, top_k=body.top_k, generate=body.generate, params=body.params,
                            filters=body.filters, pipeline=body.pipeline or "query")
        # 404 for an unknown pipeline, 422 for params it cannot take, before any streaming starts
        await run_in_threadpool(service.check_query, tenant, call)
        admission: Admission = request.app.state.admission[body.generate]
        if body.stream:
            return StreamingResponse(_sse(service, admission, tenant, collection, call),
                                     media_type="text/event-stream")
        result = await run_in_threadpool(_admitted_query, admission, service, tenant, collection, call)
        metrics.observe_query(result)
        return result

    return router


def _admitted_query(admission: Admission, service: Service, tenant: str, collection: str,
                    call: QueryRequest) -> dict[str, Any]:
    """Wait for a compute slot on a worker thread: waiting on the event loop would stall every request."""
    with admission.slot():
        return service.query(tenant, collection, call)


def _check_sizes(body: DocumentsIn, settings: Settings) -> None:
    if len(body.documents) > settings.max_documents_per_request:
        raise errors.ApiError(413, "too_many_documents", f"At most {settings.max_documents_per_request} "
                              "documents per request; split the batch.")
    for index, document in enumerate(body.documents):
        size = len(document.text.encode("utf-8"))
        if size > settings.max_document_bytes:
            name = document.id or f"documents[{index}]"
            raise errors.ApiError(413, "document_too_large", f"Document '{name}' is {size:,} bytes; the limit is "
                                  f"{settings.max_document_bytes:,}. Split it into smaller documents. Nothing "
                                  "from this request was stored.")


def _sse(service: Service, admission: Admission, tenant: str, collection: str, call: QueryRequest) -> Iterator[str]:
    """Server-sent events: ``token`` events as the answer is generated, then one ``result`` event."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def produce() -> None:
        try:
            with admission.slot():
                result = service.query(tenant, collection, call,
                                       on_token=lambda text: events.put(("token", {"text": text})))
            metrics.observe_query(result)
            events.put(("result", result))
        except errors.ApiError as exc:
            events.put(("error", {"code": exc.code, "message": exc.message}))
        except Exception as exc:  # reported as an event: the stream has already started
            code = errors.known_error_code(exc)
            if code is None:
                logger.error("streaming query failed: %s", exc.__class__.__name__, exc_info=exc)
                events.put(("error", {"code": "internal_error", "message": "ragpress hit an internal error."}))
            else:  # messages written for the caller (a remote generator's names the server, never the key)
                events.put(("error", {"code": code, "message": str(exc)}))
        events.put(("done", {}))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        kind, payload = events.get()
        yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n"
        if kind == "done":
            return


def _admin_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(auth.admin)])

    @router.get("/tenants")
    async def list_tenants(request: Request) -> dict[str, Any]:
        return {"tenants": await run_in_threadpool(_service(request).tenants)}

    @router.post("/tenants", status_code=201)
    async def create_tenant(request: Request) -> dict[str, Any]:
        body = await errors.parse_body(request, TenantIn)
        await run_in_threadpool(_service(request).create_tenant, body.name)
        return {"name": body.name}

    @router.get("/keys")
    async def list_keys(request: Request) -> dict[str, Any]:
        return {"keys": await run_in_threadpool(_service(request).keys)}

    @router.post("/keys", status_code=201)
    async def create_key(request: Request) -> dict[str, Any]:
        body = await errors.parse_body(request, KeyIn)
        try:
            key_id, key = await run_in_threadpool(_service(request).create_key, body.tenant, body.admin, body.label)
        except ValueError as exc:  # the key store's own rule: admin, or exactly one tenant
            raise errors.ApiError(422, "invalid_request", str(exc)) from None
        return {"id": key_id, "key": key, "tenant": body.tenant, "admin": body.admin}

    @router.post("/index/optimize")
    async def optimize_index(request: Request) -> dict[str, Any]:
        """Build the embedded engine's HNSW index (run after large ingests; queries wait while it runs)."""
        return await run_in_threadpool(_service(request).optimize_index)

    @router.delete("/keys/{key_id}")
    async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        if not await run_in_threadpool(_service(request).revoke_key, key_id):
            raise errors.ApiError(404, "not_found", f"No active key '{key_id}'.")
        return {"revoked": key_id}

    return router
