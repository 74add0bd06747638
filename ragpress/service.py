"""What ragpress does, independent of how it is reached: the REST API and the embedded CLI both call this.

A Service owns the process's index (embedded mode), its job store, its API keys and its query pipelines; it starts
Celery worker threads in-process unless workers run elsewhere. Callers ask it, never its parts: each method says
what it does for a tenant, and the objects behind it stay its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragpress.base import model_loading, schema
from ragpress.base.api_keys import KeyStore, Principal
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.filter_syntax import check_filters
from ragpress.base.limits import ceilings
from ragpress.base.models import ModelError
from ragpress.base.settings import Settings
from ragpress.indexers.chunk_writer import retire_units
from ragpress.indexers.converters import ConversionError
from ragpress.indexers.isolated_conversion import Upload as IncomingFile
from ragpress.indexers.isolated_conversion import convert_isolated
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
MIN_JOB_PREFIX = 8  # the console shows 12 characters of a job id; 8 hex digits already make a clash unlikely
MAX_PAGE = 1000
# How long deleting a collection waits for documents a worker holds to finish, so none lands after the delete.
SETTLE_S = 60.0
# Meta of a unit that the chunk view gives in its own fields, or that only the server uses.
_UNIT_SCOPE = frozenset({schema.TENANT, schema.COLLECTION, schema.DOC_ID, schema.CONTENT_HASH, schema.LEVEL})


class NotFound(LookupError):
    """The named resource does not exist for this tenant."""


class AmbiguousJobId(LookupError):
    """A short job id matches more than one of the tenant's jobs."""


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
               kv_precompute: str | None = None, failed: list[tuple[str, str, dict[str, Any]]] | None = None) -> str:
        """Queue documents for indexing; ``kv_precompute`` (if given) sets the collection's option first.
        ``failed``: ``(id, reason, meta)`` of documents refused before indexing, recorded as the job's failures."""
        from ragpress.workers.tasks import enqueue_job

        if kv_precompute is not None:
            self.set_collection_options(tenant, collection, kv_precompute)

        items = []
        for document in documents:
            digest = schema.content_hash(document.text)
            items.append((document.id or digest[:32], digest, document.text, document.meta))
        self._forget_unindexed(tenant, collection, items)
        job_id = self._jobs().create_job(tenant, collection, items, failed or ())
        enqueue_job(job_id, self._jobs().pending_seqs(job_id), self._settings.ingest_batch_size)
        return job_id

    def submit_files(self, tenant: str, collection: str, files: list[IncomingFile],
                     kv_precompute: str | None = None) -> dict[str, Any]:
        """Convert uploaded files to text (CPU work: call it off an event loop) and queue them as one job, each
        file a document named by its file name. A file that cannot be read, or whose text is over the size
        limit, is a failed document of the job with its reason. The original's name, type and sha256 go in
        its meta (``filename``, ``original_content_type``, ``sha256``)."""
        documents: list[IncomingDocument] = []
        failed: list[tuple[str, str, dict[str, Any]]] = []
        described = []
        for upload, converted in zip(files, convert_isolated(files, self._settings.max_conversion_s), strict=True):
            meta = {"filename": upload.name, "original_content_type": upload.content_type,
                    "sha256": hashlib.sha256(upload.data).hexdigest()}
            try:
                if isinstance(converted, ConversionError):
                    raise converted
                meta["original_content_type"] = converted.content_type
                self._check_text_size(upload.name, converted.text)
                documents.append(IncomingDocument(text=converted.text, id=upload.name, meta=meta))
            except ConversionError as exc:
                failed.append((upload.name, str(exc), meta))
            described.append({"name": upload.name, "id": upload.name, "content_type": meta["original_content_type"]})
        job_id = self.submit(tenant, collection, documents, kv_precompute, failed)
        return {"job_id": job_id, "files": described}

    def _check_text_size(self, name: str, text: str) -> None:
        size = len(text.encode("utf-8"))
        if size > self._settings.max_document_bytes:
            raise ConversionError(f"{name}: its text is {size:,} bytes; the limit is "
                                  f"{self._settings.max_document_bytes:,}. Split it into smaller files.")

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
        """The job with this id, or with this unique prefix of at least ``MIN_JOB_PREFIX`` characters."""
        job = self._jobs().job(self._job_id(tenant, job_id), tenant)
        if job is None:
            raise NotFound(f"No job '{job_id}'.")
        return job

    def _job_id(self, tenant: str, given: str) -> str:
        """The full id of the tenant's job ``given`` names in full or by a unique prefix."""
        if len(given) < MIN_JOB_PREFIX:
            raise NotFound(f"No job '{given}'. Give its full id or at least its first {MIN_JOB_PREFIX} characters.")
        matches = self._jobs().job_ids_with_prefix(tenant, given.lower())
        if len(matches) > 1:
            raise AmbiguousJobId(f"'{given}' starts more than one job id; give more of it.")
        if not matches:
            raise NotFound(f"No job '{given}'.")
        return matches[0]

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
        """Cancel the job named in full or by a unique prefix (see ``job``)."""
        full_id = self._job_id(tenant, job_id)
        if not self._jobs().cancel(full_id, tenant):
            raise NotFound(f"No job '{job_id}'.")
        return self.job(tenant, full_id)

    # --- documents --------------------------------------------------------------------------------
    def documents(self, tenant: str, collection: str, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        """A page of the collection's documents by id, after the id ``after``: ``{documents, next_after}``, each
        with its status, unit count, content hash, last update and meta (and ``error`` if it failed)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        self.collection(tenant, collection)
        page, more = self._jobs().document_page(tenant, collection, limit, after)
        return {"documents": page, "next_after": page[-1]["id"] if more and page else None}

    def document(self, tenant: str, collection: str, doc_id: str) -> dict[str, Any]:
        """One document's state (as listed) with ``chunks``: every indexed unit of it, coarsest level first."""
        self.collection(tenant, collection)
        state = self._jobs().document_state(tenant, collection, doc_id)
        if state is None:
            raise NotFound(f"No document '{doc_id}' in collection '{collection}'.")
        return {**state, "chunks": self._chunks(tenant, collection, state) if state["units"] else []}

    def _chunks(self, tenant: str, collection: str, state: dict[str, Any]) -> list[dict[str, Any]]:
        # only the registered version's units: a replace in progress briefly holds two versions
        version = {"operator": "AND", "conditions": [
            {"field": f"meta.{schema.DOC_ID}", "operator": "==", "value": state["id"]},
            {"field": f"meta.{schema.CONTENT_HASH}", "operator": "==", "value": state["content_hash"]}]}
        units = shared_store().filter_documents(scope_filters(tenant, collection, version))
        order = {level: rank for rank, level in enumerate(schema.LEVELS)}
        units.sort(key=lambda u: (order.get(u.meta.get(schema.LEVEL), len(order)), str(u.meta.get(schema.STRATEGY)),
                                  u.meta.get(schema.POSITION, 0)))
        hidden = _UNIT_SCOPE | state["meta"].keys()  # the document's own meta is shown once, not per chunk
        return [{"id": u.id, "level": u.meta.get(schema.LEVEL), "text": u.content or "",
                 "meta": {k: v for k, v in u.meta.items() if k not in hidden}} for u in units]

    def delete_document(self, tenant: str, collection: str, doc_id: str) -> int:
        """Delete one document (units, registry, queued copies, cached KV states); returns the units removed."""
        self.collection(tenant, collection)
        deleted, removed = self._remove_documents(tenant, collection, [doc_id])
        if not deleted:
            raise NotFound(f"No document '{doc_id}' in collection '{collection}'.")
        return removed

    def delete_documents(self, tenant: str, collection: str, ids: list[str] | None = None,
                         filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete the documents with these ids, or those with an indexed unit ``filters`` (query syntax) match:
        ``{deleted: [ids], units_removed}``; ids the collection does not have are left out of ``deleted``."""
        if (ids is None) == (filters is None):
            raise ValueError("give either ids or filters")
        self.collection(tenant, collection)
        if filters is not None:
            ids = self._matching_documents(tenant, collection, filters)
        deleted, removed = self._remove_documents(tenant, collection, list(dict.fromkeys(ids or [])))
        return {"deleted": deleted, "units_removed": removed}

    def _matching_documents(self, tenant: str, collection: str, filters: dict[str, Any]) -> list[str]:
        check_filters(filters)
        if not filters:  # an empty filter matches everything: deleting all is the collection delete, said so
            raise ValueError("filters is empty; to delete every document, delete the collection")
        units = shared_store().filter_documents(scope_filters(tenant, collection, filters))
        return sorted({str(u.meta.get(schema.DOC_ID)) for u in units if u.meta.get(schema.DOC_ID) is not None})

    def _remove_documents(self, tenant: str, collection: str, doc_ids: list[str]) -> tuple[list[str], int]:
        """Units first, then the registry, as a replace does; returns the ids that existed and units removed."""
        store = shared_store()
        removed = {doc_id: retire_units(store, tenant, collection, doc_id) for doc_id in doc_ids}
        known = self._jobs().remove_documents(tenant, collection, doc_ids) if doc_ids else set()
        deleted = [doc_id for doc_id in doc_ids if doc_id in known or removed[doc_id]]
        for doc_id in deleted:
            _free_kv_states(tenant, collection, doc_id)
        return deleted, sum(removed.values())

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

    def delete_collection(self, tenant: str, name: str) -> dict[str, Any]:
        """Delete a collection: its jobs are cancelled first (waiting up to ``SETTLE_S`` for documents a worker
        holds), then its units, registry rows, options and cached KV states go. ``{deleted, documents_removed,
        units_removed}``."""
        self.collection(tenant, name)
        jobs = self._jobs()
        jobs.cancel_collection_jobs(tenant, name)
        deadline = time.monotonic() + SETTLE_S
        while jobs.running_documents(tenant, name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if jobs.running_documents(tenant, name):
            logger.warning("deleting collection %s while a worker still holds some of its documents", name)
        units = int(shared_store().delete_by_filter(scope_filters(tenant, name)))
        doc_ids = jobs.drop_collection(tenant, name)
        for doc_id in doc_ids:
            _free_kv_states(tenant, name, doc_id)
        return {"deleted": name, "documents_removed": len(doc_ids), "units_removed": units}

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
        counter = self._token_counter()
        return query_response(run, lambda text: len(counter.encode(text, add_special_tokens=False)), started)

    def _token_counter(self) -> Any:
        """The generator's tokenizer, which usage counts are in; the embedder's while the generator is not fetched,
        so passages-only queries are answered on a server that cannot generate yet."""
        try:
            return model_loading.tokenizer(self._settings.generator)
        except ModelError:
            return model_loading.tokenizer(self._settings.embedder)


def _free_kv_states(tenant: str, collection: str, doc_id: str) -> None:
    """Cached KV states are content-addressed, so stale ones are never used; this only frees their bytes,
    and a KV store that is down must not fail the delete."""
    from ragpress.workers.kv_follow_up import free_document_kv

    try:
        free_document_kv(tenant, collection, doc_id)
    except Exception as exc:
        logger.warning("could not free cached KV states of %s: %s", doc_id, exc.__class__.__name__)
