"""The FastAPI application: REST contract v1 over a Service."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors
from api.body_limit import BodySizeLimit
from api.schemas import NAME_PATTERN, DocumentsIn, JobAccepted, QueryIn
from ragpress import schema
from ragpress.service import IncomingDocument, QueryRequest, Service
from ragpress.settings import Settings, get_settings

logger = logging.getLogger(__name__)
Name = Path(..., pattern=NAME_PATTERN, description="Letters, digits, '_', '.', '-'; at most 64.")


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or Service(settings)
        await run_in_threadpool(svc.start)
        app.state.service = svc
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await run_in_threadpool(svc.stop)

    app = FastAPI(title="ragpress", version="1", lifespan=lifespan,
                  description="Retrieval-augmented generation with pruning and cached KV states.")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    errors.install(app)
    _routes(app, settings)
    return app


def _service(request: Request) -> Service:
    return request.app.state.service


def _tenant(_request: Request) -> str:
    return schema.DEFAULT_TENANT


def _routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        ready = getattr(request.app.state, "ready", False)
        return JSONResponse({"status": "ready" if ready else "starting"}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/collections/{collection}/documents", status_code=202, response_model=JobAccepted,
              tags=["documents"])
    async def add_documents(request: Request, collection: str = Name) -> dict[str, str]:
        body = await errors.parse_body(request, DocumentsIn)
        if len(body.documents) > settings.max_documents_per_request:
            raise errors.ApiError(413, "too_many_documents", f"At most {settings.max_documents_per_request} "
                                  "documents per request; split the batch.")
        for index, document in enumerate(body.documents):
            size = len(document.text.encode("utf-8"))
            if size > settings.max_document_bytes:
                name = document.id or f"documents[{index}]"
                raise errors.ApiError(413, "document_too_large", f"Document '{name}' is {size:,} bytes; the limit "
                                      f"is {settings.max_document_bytes:,}. Split it into smaller documents. "
                                      "Nothing from this request was stored.")
        incoming = [IncomingDocument(text=d.text, id=d.id, meta=d.meta) for d in body.documents]
        job_id = await run_in_threadpool(_service(request).submit, _tenant(request), collection, incoming)
        return {"job_id": job_id}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def get_job(request: Request, job_id: str) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).job, _tenant(request), job_id)

    @app.get("/v1/jobs", tags=["jobs"])
    async def list_jobs(request: Request) -> dict[str, Any]:
        jobs = await run_in_threadpool(_service(request).job_store.list_jobs, _tenant(request))
        return {"jobs": jobs}

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
    async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).cancel, _tenant(request), job_id)

    @app.delete("/v1/collections/{collection}/documents/{doc_id}", tags=["documents"])
    async def delete_document(request: Request, doc_id: str, collection: str = Name) -> dict[str, Any]:
        removed = await run_in_threadpool(_service(request).delete_document, _tenant(request), collection, doc_id)
        return {"deleted": doc_id, "units_removed": removed}

    @app.get("/v1/collections", tags=["collections"])
    async def list_collections(request: Request) -> dict[str, Any]:
        return {"collections": await run_in_threadpool(_service(request).collections, _tenant(request))}

    @app.get("/v1/collections/{collection}", tags=["collections"])
    async def get_collection(request: Request, collection: str = Name) -> dict[str, Any]:
        return await run_in_threadpool(_service(request).collection_details, _tenant(request), collection)

    @app.post("/v1/collections/{collection}/query", tags=["query"], response_model=None)
    async def query(request: Request, collection: str = Name) -> Any:
        body = await errors.parse_body(request, QueryIn)
        if body.pipeline not in (None, "query"):
            raise errors.ApiError(404, "not_found", f"No pipeline '{body.pipeline}'. The built-in one is 'query'.")
        service, tenant = _service(request), _tenant(request)
        await run_in_threadpool(service.collection, tenant, collection)  # 404 before any streaming starts
        call = QueryRequest(query=body.query, top_k=body.top_k, generate=body.generate, params=body.params,
                            filters=body.filters)
        if body.stream:
            return StreamingResponse(_sse(service, tenant, collection, call), media_type="text/event-stream")
        return await run_in_threadpool(service.query, tenant, collection, call)


def _sse(service: Service, tenant: str, collection: str, call: QueryRequest) -> Iterator[str]:
    """Server-sent events: ``token`` events as the answer is generated, then one ``result`` event."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def produce() -> None:
        try:
            result = service.query(tenant, collection, call, on_token=lambda t: events.put(("token", {"text": t})))
            events.put(("result", result))
        except Exception as exc:  # reported to the client as an event; the stream has already started
            logger.error("streaming query failed: %s", exc.__class__.__name__, exc_info=exc)
            events.put(("error", {"code": "internal_error", "message": str(exc)[:500]}))
        events.put(("done", {}))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        kind, payload = events.get()
        yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n"
        if kind == "done":
            return

