"""Questions over a collection: an answer with its passages, as one JSON body or as server-sent events."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ragpress.api import auth, errors, metrics
from ragpress.api.dependencies import Name, service
from ragpress.api.limits import Admission
from ragpress.api.openapi import error_responses, request_body
from ragpress.api.schemas import QueryIn, QueryOut
from ragpress.pipelines.query_pipeline import QueryRequest
from ragpress.service import Service

logger = logging.getLogger(__name__)
SSE = {"text/event-stream": {"schema": {"type": "string"}, "example": (
    'event: token\ndata: {"text": "It"}\n\nevent: result\ndata: {"documents": [...], ...}\n\n'
    'event: done\ndata: {}\n\n')}}
STREAMED = ("With `stream: true`, server-sent events: `token` ({text}) as the answer is generated, then one `result` "
            "(the JSON body), or `error` ({code, message}), and `done`.")


def query_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/collections", tags=["query"])

    @router.post("/{collection}/query", response_model=QueryOut, response_model_exclude_unset=True,
                 openapi_extra=request_body(QueryIn),
                 responses={200: {"description": STREAMED, "content": SSE}, **error_responses(502, 503)})
    async def query(request: Request, collection: str = Name, tenant: str = Depends(auth.tenant)) -> Any:
        body = await errors.parse_body(request, QueryIn)
        svc = service(request)
        await run_in_threadpool(svc.collection, tenant, collection)  # 404 before any streaming starts
        call = QueryRequest(query=body.query, top_k=body.top_k, generate=body.generate, params=body.params,
                            filters=body.filters, pipeline=body.pipeline or "query")
        # 404 for an unknown pipeline, 422 for params it cannot take, before any streaming starts
        await run_in_threadpool(svc.check_query, tenant, call)
        admission: Admission = request.app.state.admission[body.generate]
        if body.stream:
            return StreamingResponse(sse_events(svc, admission, tenant, collection, call),
                                     media_type="text/event-stream")
        result = await run_in_threadpool(admitted_query, admission, svc, tenant, collection, call)
        metrics.observe_query(call.pipeline, result)
        return result

    return router


def admitted_query(admission: Admission, svc: Service, tenant: str, collection: str,
                   call: QueryRequest) -> dict[str, Any]:
    """Wait for a compute slot on a worker thread: waiting on the event loop would stall every request."""
    with admission.slot():
        return svc.query(tenant, collection, call)


def sse_events(svc: Service, admission: Admission, tenant: str, collection: str, call: QueryRequest) -> Iterator[str]:
    """Server-sent events: ``token`` events as the answer is generated, then one ``result`` event."""
    for kind, payload in query_events(svc, admission, tenant, collection, call):
        yield f"event: {kind}\ndata: {json.dumps(payload)}\n\n"


def query_events(svc: Service, admission: Admission, tenant: str, collection: str,
                 call: QueryRequest) -> Iterator[tuple[str, Any]]:
    """A query run on a worker thread, as ``(kind, payload)`` while it runs: ``token`` ({text}) pieces of the answer,
    then ``result`` (the query's body) or ``error`` ({code, message}), then ``done``; any wire format can carry them."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def produce() -> None:
        try:
            with admission.slot():
                result = svc.query(tenant, collection, call,
                                   on_token=lambda text: events.put(("token", {"text": text})))
            metrics.observe_query(call.pipeline, result)
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
        yield kind, payload
        if kind == "done":
            return
