"""What ragpress does, independent of how it is reached: the REST API and the embedded CLI both call this.

A Service owns the process's index (embedded mode), its job store and its query pipelines; it starts
Celery worker threads in-process unless workers run elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from haystack import Document
from haystack.core.errors import PipelineRuntimeError
from haystack.errors import FilterError

from ragpress.base import schema
from ragpress.base.api_keys import KeyStore
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.limits import ceilings, over_ceiling
from ragpress.base.model_loading import causal_lm
from ragpress.base.settings import Settings
from ragpress.generators.prompting import passage_text
from ragpress.generators.remote_generator import RemoteGeneratorError
from ragpress.indexers.chunk_writer import retire_units
from ragpress.pipelines.capabilities import SERVER_INPUTS, offered_models
from ragpress.pipelines.loader import PipelineInvalid, PipelineProblem
from ragpress.pipelines.param_types import value_problem
from ragpress.pipelines.registry import PipelineRegistry, ceiling_problems, validate
from ragpress.pipelines.stage_timer import timed_run
from ragpress.pipelines.subgraph import inputs_for, without
from ragpress.workers import runtime
from ragpress.workers.celery_app import INDEX_QUEUE, INGEST_QUEUE, get_celery
from ragpress.workers.embedded_worker import EmbeddedWorker
from ragpress.workers.job_store import JobStore

logger = logging.getLogger(__name__)

PIPELINES_KEPT_PER_THREAD = 16

# Pipeline inputs the server sets; a request's params can never override them.
RESERVED_INPUTS = frozenset({"query", "text", "filters"}) | SERVER_INPUTS


class NotFound(LookupError):
    """The named resource does not exist for this tenant."""


class InvalidRequest(ValueError):
    """A query the pipeline cannot run as asked (unknown params, malformed filters); the message says what to fix."""


@dataclass
class IncomingDocument:
    text: str
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryRequest:
    query: str
    top_k: int | None = None
    generate: bool = True
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    filters: dict[str, Any] | None = None
    pipeline: str = "query"


class Service:
    def __init__(self, settings: Settings, start_worker: bool = True) -> None:
        self.settings = settings
        self.start_worker = start_worker
        self.jobs: JobStore | None = None
        self.pipelines: PipelineRegistry
        self.keys: KeyStore
        self._worker: EmbeddedWorker | None = None
        self._local = threading.local()

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        runtime.declare_index_owner(True)
        shared_store(self.settings)  # fail fast if another process owns the index
        self.jobs = runtime.job_store()
        self.pipelines = PipelineRegistry(self.jobs.engine, ceilings(self.settings),
                                          offered_models(self.settings.embedder, self.settings.generator))
        self.keys = KeyStore(self.jobs.engine)
        if self.start_worker:
            queues = [INDEX_QUEUE]
            if self.settings.consume_ingest_queue:
                queues.append(INGEST_QUEUE)
            self._worker = EmbeddedWorker(get_celery(), queues, self.settings.worker_threads)
            self._worker.start()
            from ragpress.workers.recovery import recover_interrupted_jobs  # imports the tasks, as submit() does

            recover_interrupted_jobs(self.settings)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    @property
    def job_store(self) -> JobStore:
        if self.jobs is None:
            raise RuntimeError("Service.start() has not been called.")
        return self.jobs

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
        job_id = self.job_store.create_job(tenant, collection, items)
        enqueue_job(job_id, self.job_store.pending_seqs(job_id), self.settings.ingest_batch_size)
        return job_id

    def _forget_unindexed(self, tenant: str, collection: str, items: list[tuple[str, str, str, Any]]) -> None:
        """A document counts as unchanged only if the index really holds its units: the registry can outlive
        an index (a lost folder, a switched engine), and a skip must never leave a document unsearchable."""
        store = shared_store()
        for doc_id, digest, _text, _meta in items:
            if self.job_store.document_hash(tenant, collection, doc_id) != digest:
                continue
            extra = {"operator": "AND", "conditions": [
                {"field": f"meta.{schema.DOC_ID}", "operator": "==", "value": doc_id},
                {"field": f"meta.{schema.CONTENT_HASH}", "operator": "==", "value": digest}]}
            if not store.count_documents_by_filter(scope_filters(tenant, collection, extra)):
                logger.warning("document %s is registered but missing from the index; indexing it again", doc_id)
                self.job_store.forget_document(tenant, collection, doc_id)

    def job(self, tenant: str, job_id: str) -> dict[str, Any]:
        job = self.job_store.job(job_id, tenant)
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
        if not self.job_store.cancel(job_id, tenant):
            raise NotFound(f"No job '{job_id}'.")
        return self.job(tenant, job_id)

    def delete_document(self, tenant: str, collection: str, doc_id: str) -> int:
        self.collection(tenant, collection)
        removed = retire_units(shared_store(), tenant, collection, doc_id)
        known = self.job_store.forget_document(tenant, collection, doc_id)
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

    def collections(self, tenant: str) -> list[dict[str, Any]]:
        return [self._with_options(tenant, c) for c in self.job_store.list_collections(tenant)]

    def collection(self, tenant: str, name: str) -> dict[str, Any]:
        found = self.job_store.collection(tenant, name)
        if found is None:
            raise NotFound(f"No collection '{name}'. Create it with PUT or ingest documents into it first.")
        return self._with_options(tenant, found)

    def set_collection_options(self, tenant: str, name: str, kv_precompute: str | None) -> dict[str, Any]:
        """Create the collection if needed and set its options (None: follow the server default)."""
        from ragpress.workers.kv_follow_up import KV_PRECOMPUTE_MODES

        if kv_precompute is not None and kv_precompute not in KV_PRECOMPUTE_MODES:
            raise ValueError(f"kv_precompute must be one of {KV_PRECOMPUTE_MODES}")
        self.job_store.set_collection_options(tenant, name, kv_precompute)
        return self.collection_details(tenant, name)

    def _with_options(self, tenant: str, found: dict[str, Any]) -> dict[str, Any]:
        options = self.job_store.collection_options(tenant, found["name"])
        return {**found, "kv_precompute": options.get("kv_precompute") or self.settings.kv_precompute}

    def collection_details(self, tenant: str, name: str) -> dict[str, Any]:
        """The collection with the number of units its index really holds (not just the registry's)."""
        details = self.collection(tenant, name)
        store = shared_store()
        details["indexed_units"] = int(store.count_documents_by_filter(scope_filters(tenant, name)))
        return details

    # --- query ------------------------------------------------------------------------------------
    def _pipelines(self, tenant: str, name: str) -> dict[str, Any]:
        """The named pipeline's current version, built once per serving thread (Haystack pipelines keep
        per-run state); a newly saved version has a new key, so the next request uses it."""
        saved = self.pipelines.get(tenant, name)
        cache: OrderedDict[tuple[str, str, int], dict[str, Any]] = self._local.__dict__.setdefault(
            "pipelines", OrderedDict())
        key = (tenant, name, saved["version"])
        if key in cache:
            cache.move_to_end(key)
        else:
            label = f"pipeline '{name}' version {saved['version']}"
            try:  # a version saved before today's rules is held to them too
                pipeline, _graph = validate(saved["yaml"], models=self.pipelines.models)
            except PipelineInvalid as exc:
                raise InvalidRequest(f"{label} cannot run on this server: {exc}. Save a new version.") from None
            # A version saved before the ceilings existed or were lowered, or a built-in shipped above what its
            # operator allows, runs only where the request overrides the excess (checked per query).
            over = ceiling_problems(saved["yaml"], self.pipelines.limits)
            cache[key] = {**with_retrieval_only(pipeline), "over_ceiling": over, "label": label}
            while len(cache) > PIPELINES_KEPT_PER_THREAD:  # tenants can save any number of versions
                cache.popitem(last=False)
        return cache[key]

    def check_query(self, tenant: str, request: QueryRequest) -> None:
        """Refuse a query its pipeline cannot run (unknown pipeline, params it cannot take) or that asks for more
        than the server's ceilings, before it starts."""
        self._check_request(self._pipelines(tenant, request.pipeline), request)

    def _check_request(self, variants: dict[str, Any], request: QueryRequest) -> None:
        problem = over_ceiling("top_k", request.top_k, self.pipelines.limits)
        if problem is not None:
            raise InvalidRequest(f"top_k: {problem}")
        check_params(variants["full"], request.params, self.pipelines.limits)
        unresolved = [p for p in variants.get("over_ceiling", []) if not _overridden(variants, p, request)]
        if unresolved:
            raise InvalidRequest(f"{variants['label']} asks more than this server allows ({unresolved[0].field}: "
                                 f"{unresolved[0].message}); lower it in the request's top_k or params where the "
                                 f"component takes it at query time, or save a version within it.")

    def query(self, tenant: str, collection: str, request: QueryRequest,
              on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        return self.run_pipeline(tenant, collection, self._pipelines(tenant, request.pipeline), request, on_token)

    def run_pipeline(self, tenant: str, collection: str, variants: dict[str, Any], request: QueryRequest,
                     on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run a query pipeline (``with_retrieval_only``'s variants) with the server's inputs bound: the scope
        can never come from the request."""
        self.collection(tenant, collection)
        started = time.perf_counter()
        self._check_request(variants, request)
        pipeline = variants["full" if request.generate else "retrieval"]
        values: dict[str, Any] = {"query": request.query, "text": request.query,
                                  "scope": schema.Scope(tenant, collection)}
        if request.filters is not None:
            values["filters"] = request.filters
        if on_token is not None:
            values["streaming_callback"] = lambda chunk: on_token(chunk.content)
        data = inputs_for(pipeline, values)
        if request.top_k is not None:
            for name in _final_rankers(pipeline):
                data.setdefault(name, {})["top_k"] = request.top_k
        running = {n for n, _ in pipeline.walk()}
        for component, params in request.params.items():
            if component in running:  # a generate: false run drops the answer stages, and their params
                data.setdefault(component, {}).update(params)
        with timed_run() as timings:
            try:
                result = pipeline.run(data, include_outputs_from=running)
            except PipelineRuntimeError as exc:
                reported = _reported_error(exc, request)
                if reported is None:
                    raise
                raise reported from None
        return self._response(pipeline, result, timings, started)

    def _response(self, pipeline: Any, result: dict[str, Any], timings: dict[str, float],
                  started: float) -> dict[str, Any]:
        read = _final_documents(result)
        tokenizer = causal_lm(self.settings.generator)[1]
        count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
        response: dict[str, Any] = {
            "documents": [_document_out(d) for d in _final_documents(result, past_refusals=True)],
            "usage": {
                "context_tokens": sum(count(d.content or "") for d in read),
                "context_tokens_after_pruning": sum(count(passage_text(d)) for d in read),
            },
            "timings_ms": _stage_timings(pipeline, timings),
        }
        replies = _first_output(result, "replies")
        if replies is not None:
            meta = (_first_output(result, "meta") or [{}])[0]
            response["answer"] = replies[0] if replies else ""
            response["abstained"] = bool(meta.get("abstained", False))
            if response["abstained"]:
                response["abstain_reason"] = _first_output(result, "abstain_reason") or "model_declined"
            response["timings_ms"]["ttft"] = round(float(meta.get("ttft_ms", 0.0)), 1)
        response["timings_ms"]["total"] = round((time.perf_counter() - started) * 1000, 1)
        return response


def _free_kv_states(tenant: str, collection: str, doc_id: str) -> None:
    """Cached KV states are content-addressed, so stale ones are never used; this only frees their bytes,
    and a KV store that is down must not fail the delete."""
    from ragpress.workers.kv_follow_up import free_document_kv

    try:
        free_document_kv(tenant, collection, doc_id)
    except Exception as exc:
        logger.warning("could not free cached KV states of %s: %s", doc_id, exc.__class__.__name__)


def check_params(pipeline: Any, params: dict[str, dict[str, Any]], limits: Mapping[str, int]) -> None:
    """Refuse ``params`` naming a component the pipeline lacks, an input that is connected, unknown or the
    server's to set (saying what could be set instead), or a value above the server's ceiling for it."""
    components = [n for n, _ in pipeline.walk()]
    sockets = pipeline.inputs()
    for name, values in params.items():
        if name not in components:
            raise InvalidRequest(f"params: the pipeline has no component '{name}'; "
                                 f"its components are {', '.join(components)}.")
        settable = sorted(set(sockets.get(name, {})) - RESERVED_INPUTS)
        for key in values:
            if key == "filters":
                raise InvalidRequest(f"params.{name}.filters: give filters in the request's `filters` field.")
            if key in RESERVED_INPUTS:
                raise InvalidRequest(f"params.{name}.{key} is set by the server and cannot be overridden.")
            if key not in settable:
                raise InvalidRequest(f"params.{name}.{key}: '{name}' takes no such input at query time; "
                                     f"it takes {', '.join(settable) or 'none'}.")
            problem = value_problem(values[key], sockets[name][key]["type"]) or over_ceiling(key, values[key], limits)
            if problem is not None:
                raise InvalidRequest(f"params.{name}.{key}: {problem}")


def _overridden(variants: dict[str, Any], problem: PipelineProblem, request: QueryRequest) -> bool:
    """Whether this query does not run the init parameter ``problem`` names at its stored value: the request
    sets it (its ``top_k`` or ``params``, both already held to the ceilings), or the component does not run
    (the answer stages of a ``generate: false`` query)."""
    component, parameter = problem.field.removeprefix("components.").rsplit(".init_parameters.", 1)
    running = variants["full" if request.generate else "retrieval"]
    return (component not in {n for n, _ in running.walk()}
            or parameter in request.params.get(component, {})
            or (parameter == "top_k" and request.top_k is not None and component in _final_rankers(running)))


def _reported_error(exc: PipelineRuntimeError, request: QueryRequest) -> Exception | None:
    """What to report for a failed run: the caller's own mistake (a malformed filter, a runtime value a
    component refuses) as such, a remote generator's failure as the server's (502); None for anything else,
    which stays an internal error with its full cause in the log."""
    cause = exc.__cause__
    if isinstance(cause, RemoteGeneratorError):
        return cause
    if isinstance(cause, FilterError):
        return InvalidRequest(f"filters: {cause}")
    if isinstance(cause, ValueError) and exc.component_name in request.params:
        return InvalidRequest(f"params.{exc.component_name}: {cause}")
    return None


def _answer_stages(pipeline: Any) -> set[str]:
    """The components only an answer needs: generators, and the gates that decide whether to answer at all
    (a ``generate: false`` query asks for the ranked documents, which a refusal would empty)."""
    names = {n for n, outputs in pipeline.outputs().items() if {"replies", "abstain_reason"} & set(outputs)}
    return names | {n for n, c in pipeline.walk() if hasattr(c, "fit_to_budget")}


def with_retrieval_only(pipeline: Any) -> dict[str, Any]:
    """The pipeline, warmed up, and its variant without its answer stages (for ``generate: false``)."""
    pipeline.warm_up()
    stages = _answer_stages(pipeline)
    return {"full": pipeline, "retrieval": without(pipeline, stages) if stages else pipeline}


def _final_rankers(pipeline: Any) -> list[str]:
    """Where a request's ``top_k`` applies: the rerankers/pruners when the pipeline has them (so they choose
    from the retriever's wider pool), otherwise the retrievers."""
    sockets = pipeline.inputs()
    rankers = [n for n, c in pipeline.walk() if "top_k" in sockets.get(n, {}) and
               any(m in type(c).__name__ for m in ("Ranker", "Reranker", "Pruner"))]
    return rankers or [n for n, c in pipeline.walk() if "top_k" in sockets.get(n, {}) and
                       "Retriever" in type(c).__name__]


def _first_output(result: dict[str, Any], key: str) -> Any:
    for outputs in result.values():
        if isinstance(outputs, dict) and key in outputs:
            return outputs[key]
    return None


def _final_documents(result: dict[str, Any], past_refusals: bool = False) -> list[Document]:
    """The documents the generator read: the last stage's documents output (retriever, reranker, pruner).

    With ``past_refusals`` a gate that abstained is looked through, giving the documents it judged, so a
    refusal still shows the caller what was found and why it was not enough."""
    found: list[Document] = []
    for outputs in result.values():
        if not isinstance(outputs, dict) or not isinstance(outputs.get("documents"), list):
            continue
        if not (past_refusals and outputs.get("abstain_reason")):
            found = outputs["documents"]  # include_outputs_from yields components in run order
    return found


def _document_out(document: Document) -> dict[str, Any]:
    meta = document.meta or {}
    out: dict[str, Any] = {
        "id": document.id, "doc_id": meta.get(schema.DOC_ID), "text": document.content or "",
        "score": document.score, "level": meta.get(schema.LEVEL), "sentences": meta.get(schema.SENTENCES, []),
        "meta": {k: v for k, v in meta.items() if k not in _INTERNAL_META},
    }
    if "pruned_text" in meta:
        out["pruned_text"] = meta["pruned_text"]
        out["kept_sentences"] = meta.get("kept_sentences", [])
    return out


_INTERNAL_META = frozenset({schema.TENANT, schema.COLLECTION, schema.DOC_ID, schema.CONTENT_HASH, schema.LEVEL,
                            schema.SENTENCES, "pruned_text", "kept_sentences", "sentence_scores"})

_STAGES = (("rerank", ("Reranker", "Ranker")), ("prune", ("Pruner",)), ("retrieve", ("Retriever", "Embedder")))


def _stage_timings(pipeline: Any, timings: dict[str, float]) -> dict[str, float]:
    stages = {"retrieve": 0.0, "rerank": 0.0, "prune": 0.0}
    for name, comp in pipeline.walk():
        kind = type(comp).__name__
        for stage, markers in _STAGES:
            if any(marker in kind for marker in markers):
                stages[stage] += timings.get(name, 0.0)
                break
    return {k: round(v, 1) for k, v in stages.items()}

