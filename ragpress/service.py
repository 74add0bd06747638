"""What ragpress does, independent of how it is reached: the REST API and the embedded CLI both call this.

A Service owns the process's index (embedded mode), its job store, its API keys and its query pipelines; it starts
Celery worker threads in-process unless workers run elsewhere. Callers ask it, never its parts: each method says
what it does for a tenant, and the objects behind it stay its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragpress.base import schema
from ragpress.base.api_keys import KeyStore, Principal
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.limits import ceilings
from ragpress.base.model_loading import causal_lm
from ragpress.base.settings import Settings
from ragpress.indexers.chunk_writer import retire_units
from ragpress.pipelines.capabilities import offered_models
from ragpress.pipelines.query_pipeline import QueryPipeline, QueryPipelines, QueryRequest
from ragpress.pipelines.registry import PipelineRegistry
from ragpress.query_response import query_response
from ragpress.workers import runtime
from ragpress.workers.celery_app import INDEX_QUEUE, INGEST_QUEUE, get_celery
from ragpress.workers.embedded_worker import EmbeddedWorker
from ragpress.workers.job_store import JobStore

logger = logging.getLogger(__name__)

Graph = dict[str, list[dict[str, str]]]


class NotFound(LookupError):
    """The named resource does not exist for this tenant."""


@dataclass
class IncomingDocument:
    text: str
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Service:
    def __init__(self, settings: Settings, start_worker: bool = True) -> None:
        self._settings = settings
        self._start_worker = start_worker
        self._job_store: JobStore | None = None
        self._registry: PipelineRegistry
        self._query_pipelines: QueryPipelines
        self._keys: KeyStore
        self._worker: EmbeddedWorker | None = None

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        runtime.declare_index_owner(True)
        shared_store(self._settings)  # fail fast if another process owns the index
        self._job_store = runtime.job_store()
        self._registry = PipelineRegistry(self._job_store.engine, ceilings(self._settings),
                                          offered_models(self._settings.embedder, self._settings.generator))
        self._query_pipelines = QueryPipelines(self._registry)
        self._keys = KeyStore(self._job_store.engine)
        if self._start_worker:
            queues = [INDEX_QUEUE]
            if self._settings.consume_ingest_queue:
                queues.append(INGEST_QUEUE)
            self._worker = EmbeddedWorker(get_celery(), queues, self._settings.worker_threads)
            self._worker.start()
            from ragpress.workers.recovery import recover_interrupted_jobs  # imports the tasks, as submit() does

            recover_interrupted_jobs(self._settings)

    def stop(self) -> None:
        """Stop the worker threads, then close the index, so an embedded engine flushes and releases its folder."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._job_store is not None:
            shared_store().close()

    def _jobs(self) -> JobStore:
        if self._job_store is None:
            raise RuntimeError("Service.start() has not been called.")
        return self._job_store

    # --- tenants and keys -------------------------------------------------------------------------
    def any_keys(self) -> bool:
        return self._keys.any_keys()

    def authenticate(self, key: str) -> Principal | None:
        return self._keys.authenticate(key)

    def tenants(self) -> list[str]:
        return self._keys.list_tenants()

    def create_tenant(self, name: str) -> None:
        self._keys.create_tenant(name)

    def keys(self) -> list[dict[str, Any]]:
        return self._keys.list_keys()

    def create_key(self, tenant: str | None, admin: bool = False, label: str = "") -> tuple[str, str]:
        """(key id, the key): the key is shown once and stored as a hash. ValueError unless admin or one tenant."""
        return self._keys.create_key(tenant, admin, label)

    def revoke_key(self, key_id: str) -> bool:
        return self._keys.revoke(key_id)

    # --- ingestion --------------------------------------------------------------------------------
    def submit(self, tenant: str, collection: str, documents: list[IncomingDocument],
               kv_precompute: str | None = None) -> str:
        """Queue documents for indexing; ``kv_precompute`` (if given) sets the collection's option first."""
        from ragpress.workers.tasks import enqueue_job

        if kv_precompute is not None:
            self.set_collection_options(tenant, collection, kv_precompute)

        items = []
        for document in documents:
            digest = schema.content_hash(document.text)
            items.append((document.id or digest[:32], digest, document.text, document.meta))
        self._forget_unindexed(tenant, collection, items)
        job_id = self._jobs().create_job(tenant, collection, items)
        enqueue_job(job_id, self._jobs().pending_seqs(job_id), self._settings.ingest_batch_size)
        return job_id

    def _forget_unindexed(self, tenant: str, collection: str, items: list[tuple[str, str, str, Any]]) -> None:
        """A document counts as unchanged only if the index really holds its units: the registry can outlive
        an index (a lost folder, a switched engine), and a skip must never leave a document unsearchable."""
        store = shared_store()
        for doc_id, digest, _text, _meta in items:
            if self._jobs().document_hash(tenant, collection, doc_id) != digest:
                continue
            extra = {"operator": "AND", "conditions": [
                {"field": f"meta.{schema.DOC_ID}", "operator": "==", "value": doc_id},
                {"field": f"meta.{schema.CONTENT_HASH}", "operator": "==", "value": digest}]}
            if not store.count_documents_by_filter(scope_filters(tenant, collection, extra)):
                logger.warning("document %s is registered but missing from the index; indexing it again", doc_id)
                self._jobs().forget_document(tenant, collection, doc_id)

    def jobs(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's most recent jobs."""
        return self._jobs().list_jobs(tenant)

    def job(self, tenant: str, job_id: str) -> dict[str, Any]:
        job = self._jobs().job(job_id, tenant)
        if job is None:
            raise NotFound(f"No job '{job_id}'.")
        return job

    def wait(self, tenant: str, job_id: str, timeout_s: float = 600, poll_s: float = 0.2,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(tenant, job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)

    def cancel(self, tenant: str, job_id: str) -> dict[str, Any]:
        if not self._jobs().cancel(job_id, tenant):
            raise NotFound(f"No job '{job_id}'.")
        return self.job(tenant, job_id)

    def delete_document(self, tenant: str, collection: str, doc_id: str) -> int:
        self.collection(tenant, collection)
        removed = retire_units(shared_store(), tenant, collection, doc_id)
        known = self._jobs().forget_document(tenant, collection, doc_id)
        _free_kv_states(tenant, collection, doc_id)
        if not known and not removed:
            raise NotFound(f"No document '{doc_id}' in collection '{collection}'.")
        return removed

    def optimize_index(self) -> dict[str, Any]:
        store = shared_store()
        if not hasattr(store, "optimize"):
            return {"optimized": False, "reason": "this index builds its own search structures"}
        started = time.perf_counter()
        store.optimize()
        return {"optimized": True, "seconds": round(time.perf_counter() - started, 1),
                "points": int(store.count_documents())}

    # --- collections ------------------------------------------------------------------------------
    def collections(self, tenant: str) -> list[dict[str, Any]]:
        return [self._with_options(tenant, c) for c in self._jobs().list_collections(tenant)]

    def collection(self, tenant: str, name: str) -> dict[str, Any]:
        found = self._jobs().collection(tenant, name)
        if found is None:
            raise NotFound(f"No collection '{name}'. Create it with PUT or ingest documents into it first.")
        return self._with_options(tenant, found)

    def set_collection_options(self, tenant: str, name: str, kv_precompute: str | None) -> dict[str, Any]:
        """Create the collection if needed and set its options (None: follow the server default)."""
        from ragpress.workers.kv_follow_up import KV_PRECOMPUTE_MODES

        if kv_precompute is not None and kv_precompute not in KV_PRECOMPUTE_MODES:
            raise ValueError(f"kv_precompute must be one of {KV_PRECOMPUTE_MODES}")
        self._jobs().set_collection_options(tenant, name, kv_precompute)
        return self.collection_details(tenant, name)

    def _with_options(self, tenant: str, found: dict[str, Any]) -> dict[str, Any]:
        options = self._jobs().collection_options(tenant, found["name"])
        return {**found, "kv_precompute": options.get("kv_precompute") or self._settings.kv_precompute}

    def collection_details(self, tenant: str, name: str) -> dict[str, Any]:
        """The collection with the number of units its index really holds (not just the registry's)."""
        details = self.collection(tenant, name)
        store = shared_store()
        details["indexed_units"] = int(store.count_documents_by_filter(scope_filters(tenant, name)))
        return details

    # --- pipelines --------------------------------------------------------------------------------
    def pipelines(self, tenant: str) -> list[dict[str, Any]]:
        return self._registry.list(tenant)

    def pipeline(self, tenant: str, name: str, version: int | None = None) -> dict[str, Any]:
        return self._registry.get(tenant, name, version)

    def save_pipeline(self, tenant: str, name: str, text: str) -> dict[str, Any]:
        """Validate the YAML and save it as the pipeline's next version; the next request uses it."""
        return self._registry.save(tenant, name, text)

    def delete_pipeline(self, tenant: str, name: str) -> None:
        self._registry.delete(tenant, name)

    def pipeline_versions(self, tenant: str, name: str) -> list[dict[str, Any]]:
        return self._registry.versions(tenant, name)

    def rollback_pipeline(self, tenant: str, name: str, version: int) -> dict[str, Any]:
        return self._registry.rollback(tenant, name, version)

    def validate_pipeline(self, text: str) -> Graph:
        """The pipeline YAML's graph, or PipelineInvalid saying where and why it cannot be saved."""
        return self._registry.validate(text)[1]

    def dry_run(self, tenant: str, collection: str, text: str, query: str) -> dict[str, Any]:
        """Run the pipeline YAML without its answer stages on ``query``, as a query would, saving nothing."""
        pipeline, _graph = self._registry.validate(text)
        return self._query(tenant, collection, QueryPipeline(pipeline, "the pipeline under validation"),
                           QueryRequest(query=query, generate=False))

    # --- query ------------------------------------------------------------------------------------
    def check_query(self, tenant: str, request: QueryRequest) -> None:
        """Refuse a query its pipeline cannot run (unknown pipeline, params it cannot take) or that asks for more
        than the server's ceilings, before it starts."""
        self._query_pipelines.get(tenant, request.pipeline).check(request, self._registry.limits)

    def query(self, tenant: str, collection: str, request: QueryRequest,
              on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        return self._query(tenant, collection, self._query_pipelines.get(tenant, request.pipeline), request,
                           on_token)

    def _query(self, tenant: str, collection: str, pipeline: QueryPipeline, request: QueryRequest,
               on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        self.collection(tenant, collection)
        started = time.perf_counter()
        pipeline.check(request, self._registry.limits)
        run = pipeline.run(request, schema.Scope(tenant, collection), on_token)
        tokenizer = causal_lm(self._settings.generator)[1]
        return query_response(run, lambda text: len(tokenizer.encode(text, add_special_tokens=False)), started)


def _free_kv_states(tenant: str, collection: str, doc_id: str) -> None:
    """Cached KV states are content-addressed, so stale ones are never used; this only frees their bytes,
    and a KV store that is down must not fail the delete."""
    from ragpress.workers.kv_follow_up import free_document_kv

    try:
        free_document_kv(tenant, collection, doc_id)
    except Exception as exc:
        logger.warning("could not free cached KV states of %s: %s", doc_id, exc.__class__.__name__)
