"""Prometheus metrics and one log line per request (with its request id; never bodies or keys)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ragpress.requests")

REQUESTS = Counter("ragpress_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("ragpress_request_seconds", "HTTP request latency", ["route"])
STAGE = Histogram("ragpress_stage_seconds", "Query pipeline stage latency", ["stage"])
TOKENS_IN = Counter("ragpress_context_tokens_total", "Context tokens retrieved for generation")
TOKENS_SAVED = Counter("ragpress_context_tokens_pruned_total", "Context tokens removed by pruning")
KV_CACHE = Counter("ragpress_kv_cache_total", "KV cache lookups by the generator", ["result"])
DOCUMENTS_SUBMITTED = Counter("ragpress_documents_submitted_total", "Documents accepted for ingestion")


def observe_query(response: dict[str, Any]) -> None:
    for stage, ms in response.get("timings_ms", {}).items():
        STAGE.labels(stage).observe(ms / 1000)
    usage = response.get("usage", {})
    TOKENS_IN.inc(usage.get("context_tokens", 0))
    TOKENS_SAVED.inc(max(0, usage.get("context_tokens", 0) - usage.get("context_tokens_after_pruning", 0)))
    for result in ("hit", "miss"):
        count = response.get("kv_cache", {}).get(result, 0)
        if count:
            KV_CACHE.labels(result).inc(count)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestLog:
    """Tags each request with an id (``X-Request-ID``, kept if the caller sent one), counts and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(elapsed)
            logger.info("request_id=%s method=%s route=%s status=%d ms=%.1f", request_id, scope["method"], route,
                        status, elapsed * 1000)
