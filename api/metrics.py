"""Prometheus metrics and one log line per request (with its request id; never bodies or keys).

Query metrics carry the pipeline's name when it is a built-in one and ``custom`` otherwise: /metrics is read without
a key, so a tenant's own pipeline names must not show there, and a label must not grow with every name saved.
Ingestion metrics are recorded where jobs run (``ragpress.workers.job_metrics``): the embedded workers of
``ragpress serve`` report here too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragpress.generators.kv_store import open_store
from ragpress.pipelines.loader import BUILTIN_PIPELINES

CUSTOM = "custom"
logger = logging.getLogger("ragpress.requests")

REQUESTS = Counter("ragpress_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("ragpress_request_seconds", "HTTP request latency", ["route"])
QUERIES = Counter("ragpress_queries_total", "Queries answered", ["pipeline"])
STAGE = Histogram("ragpress_stage_seconds", "Query pipeline stage latency", ["pipeline", "stage"])
TOKENS_IN = Counter("ragpress_context_tokens_total", "Context tokens retrieved for generation", ["pipeline"])
TOKENS_SAVED = Counter("ragpress_context_tokens_pruned_total", "Context tokens removed by pruning", ["pipeline"])
KV_CACHE = Counter("ragpress_kv_cache_lookups_total", "Passages' cached KV states looked up by the KV generator: "
                   "found (hit) or not (miss)", ["pipeline", "result"])
KV_BYTES = Counter("ragpress_kv_loaded_bytes_total", "Bytes of cached KV states the KV generator read (their size in "
                   "the store); divided by ragpress_kv_loaded_tokens_total: stored bytes per token", ["pipeline"])
KV_TOKENS = Counter("ragpress_kv_loaded_tokens_total", "Context tokens whose cached KV states the KV generator read",
                    ["pipeline"])
DOCUMENTS_SUBMITTED = Counter("ragpress_documents_submitted_total", "Documents accepted for ingestion")


def observe_query(name: str, response: dict[str, Any]) -> None:
    pipeline = name if name in BUILTIN_PIPELINES else CUSTOM
    QUERIES.labels(pipeline).inc()
    for stage, ms in response.get("timings_ms", {}).items():
        STAGE.labels(pipeline, stage).observe(ms / 1000)
    usage = response.get("usage", {})
    TOKENS_IN.labels(pipeline).inc(usage.get("context_tokens", 0))
    TOKENS_SAVED.labels(pipeline).inc(
        max(0, usage.get("context_tokens", 0) - usage.get("context_tokens_after_pruning", 0)))
    if "kv_cache" in response:  # only a KV-cache generator looks states up
        KV_CACHE.labels(pipeline, "hit").inc(response["kv_cache"]["hits"])
        KV_CACHE.labels(pipeline, "miss").inc(response["kv_cache"]["misses"])
        KV_BYTES.labels(pipeline).inc(response["kv_cache"].get("stored_bytes", 0))
        KV_TOKENS.labels(pipeline).inc(response["kv_cache"].get("tokens", 0))


class KVStoreSize(Collector):
    """The bytes of cached KV states in the server's KV store (the one pipelines use unless they name their own)
    and its budget (``RAGPRESS_KV_MAX_BYTES``), read at scrape time: what an operator sizes the budget and disk or
    Redis memory by. Stored bytes at the budget mean eviction is under way, and eager pre-compute stopping."""

    NAME, HELP = "ragpress_kv_store_bytes", "Bytes of cached KV states in the server's KV store"
    BUDGET, BUDGET_HELP = "ragpress_kv_store_budget_bytes", "Byte budget of the server's KV store"

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # registering must not open the store
        yield from (GaugeMetricFamily(self.NAME, self.HELP), GaugeMetricFamily(self.BUDGET, self.BUDGET_HELP))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            store = open_store()
            stored = store.total_bytes()
        except Exception as exc:  # a store that is down must not take the other metrics with it
            logger.warning("KV store size not readable for /metrics: %s", exc.__class__.__name__)
            return
        yield GaugeMetricFamily(self.NAME, self.HELP, value=stored)
        yield GaugeMetricFamily(self.BUDGET, self.BUDGET_HELP, value=store.max_bytes)


REGISTRY.register(KVStoreSize())


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
