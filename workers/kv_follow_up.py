"""What happens to cached KV states after documents are indexed, replaced or deleted.

A collection's ``kv_precompute`` option (server default ``RAGPRESS_KV_PRECOMPUTE``) picks when chunk KV
states are computed: ``eager`` at ingestion, by a follow-up task queued once a batch is indexed (indexing
never waits for it, and its failure is a warning on the job, never a failed document), or ``lazy`` on a
chunk's first query. Either way the follow-up frees the states of a replaced version at once. Eager
pre-compute stays within the store's byte budget without evicting what its own job computed: it evicts older
entries, and when only the job's (or fresher) ones are left it stops; those documents' states are ``budget``.

States are computed for the KV settings of every pipeline of the tenant that loads cached states (the
builtin ``kv`` one and any saved one), so the generator finds them under the keys it looks up.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from haystack import Document
from sqlalchemy.engine import Engine

from ragpress.base import schema
from ragpress.base.settings import get_settings
from ragpress.workers.job_store import JobStore

logger = logging.getLogger(__name__)

KV_PRECOMPUTE_MODES = ("lazy", "eager")
KV_GENERATOR_TYPE = "ragpress.generators.kv_generator.KVCacheGenerator"
KV_SETTINGS = ("model", "store", "quantization", "system_prompt")  # what a stored entry's key depends on
KV_LEVELS = (None, "chunk")
MAX_KV_CONFIGS = 4  # the units a KV pipeline retrieves and loads states for


def kv_mode(store: JobStore, tenant: str, collection: str) -> str:
    return store.collection_options(tenant, collection).get("kv_precompute") or get_settings().kv_precompute


def kv_configs(engine: Engine, tenant: str) -> list[dict[str, Any]]:
    """The distinct KV settings of the tenant's pipelines that load cached states: of versions that meet
    today's pipeline rules only (an older one could name a store or model the server no longer allows), and at
    most ``MAX_KV_CONFIGS`` of them, since each is computed for every document ingested."""
    from ragpress.generators.kv_generator import KVCacheGenerator
    from ragpress.pipelines.capabilities import offered_models, static_problems
    from ragpress.pipelines.loader import PipelineInvalid, parse_yaml
    from ragpress.pipelines.registry import PipelineRegistry

    defaults = {name: parameter.default for name, parameter in
                inspect.signature(KVCacheGenerator.__init__).parameters.items() if name in KV_SETTINGS}
    settings = get_settings()
    models = offered_models(settings.embedder, settings.generator)
    registry = PipelineRegistry(engine)
    configs: dict[str, dict[str, Any]] = {}
    for listed in registry.list(tenant):
        text = registry.get(tenant, listed["name"])["yaml"]
        try:
            data = parse_yaml(text)
        except PipelineInvalid:
            continue
        if static_problems(text, data, models):
            continue
        for spec in data["components"].values():
            if spec.get("type") != KV_GENERATOR_TYPE:
                continue
            given = spec.get("init_parameters") or {}
            config = {key: given.get(key, defaults[key]) for key in KV_SETTINGS}
            configs[json.dumps(config, sort_keys=True, default=str)] = config
    if len(configs) > MAX_KV_CONFIGS:
        logger.warning("tenant %s's pipelines name %d KV configurations; states are pre-computed for the first %d",
                       tenant, len(configs), MAX_KV_CONFIGS)
    return list(configs.values())[:MAX_KV_CONFIGS]


def follow_up_items(sources: list[Document], units: list[Document], eager: bool) -> list[dict[str, Any]]:
    """One item per indexed document. Eager items carry the converted text and the chunks' spans in it, so
    the states are sliced from one sequential pass, exactly as the chunks' offsets say."""
    items: dict[str, dict[str, Any]] = {}
    for source in sources:
        meta = source.meta or {}
        doc_id = str(meta.get(schema.DOC_ID))
        items[doc_id] = {"doc_id": doc_id, "content_hash": meta.get(schema.CONTENT_HASH)}
        if eager:
            items[doc_id].update(text=source.content or "", spans=[])
    if eager:
        for unit in units:
            meta = unit.meta or {}
            item = items.get(str(meta.get(schema.DOC_ID)))
            if item is None or meta.get(schema.LEVEL) not in KV_LEVELS or meta.get(schema.START) is None:
                continue
            item["spans"].append([int(meta[schema.START]), int(meta[schema.END])])
    return list(items.values())


def run_follow_up(store: JobStore, job_id: str, tenant: str, collection: str, items: list[dict[str, Any]]) -> None:
    """Free each document's previous states; when the items carry text (eager), compute and store the new ones.

    Pre-compute never evicts states used since its job began: once the store's budget holds nothing older,
    the job's remaining documents, in this batch and later ones, are marked ``budget`` and their states come on
    first use."""
    from ragpress.generators.kv_context import invalidate_document_kv, kv_owner

    configs = kv_configs(store.engine, tenant)
    keep_since = store.job_started(job_id)
    # the configurations whose store is full of this job's states; an earlier batch's stop holds for the whole job
    full: set[int] = set(range(len(configs))) if store.kv_budget_reached(job_id) else set()
    for item in items:
        doc_id = item["doc_id"]
        owner = kv_owner(tenant, collection, doc_id)
        try:
            for kv_store in _stores(configs):
                invalidate_document_kv(owner, kv_store)
        except Exception as exc:  # stale states are never hit (content-addressed): they only wait for eviction
            logger.warning("could not free the previous KV states of %s: %s", doc_id, exc)
        if "text" not in item:
            store.kv_finished(job_id, doc_id, "lazy")
            continue
        stored, errors = _precompute(item, owner, configs, keep_since, full)
        if errors:  # the document is indexed and searchable; its missing states come lazily instead
            logger.warning("KV pre-compute of %s in %s/%s failed: %s", doc_id, tenant, collection, errors[0])
            store.kv_finished(job_id, doc_id, "failed", stored,
                              "KV pre-compute failed (" + "; ".join(errors) + "); states will be computed on first use")
        elif len(full) == len(configs) and configs:
            store.kv_finished(job_id, doc_id, "budget", stored)
        else:
            store.kv_finished(job_id, doc_id, "done", stored)


def _precompute(item: dict[str, Any], owner: str, configs: list[dict[str, Any]], keep_since: float | None,
                full: set[int]) -> tuple[int, list[str]]:
    """Entries stored for every KV configuration whose store has room, each on its own: one bad configuration
    spoils no other. A configuration whose store fills up is added to ``full`` and skipped from then on."""
    from ragpress.generators.kv_context import precompute_document_kv
    from ragpress.generators.kv_store import KVBudgetFull

    spans = sorted({(int(start), int(end)) for start, end in item["spans"]})
    stored, errors = 0, []
    for number, config in enumerate(configs):
        if number in full:
            continue
        try:
            stored += precompute_document_kv(item["text"], spans, doc_id=owner, digest=item.get("content_hash"),
                                             keep_since=keep_since, **config)
        except KVBudgetFull as exc:
            stored += exc.stored
            full.add(number)
            logger.warning("KV store of model %s is full of states this job computed; pre-compute stops and the "
                           "rest come on first use (raise the store's max_bytes to keep more)", config["model"])
        except Exception as exc:
            errors.append(f"model {config['model']}: {exc.__class__.__name__}: {str(exc)[:300]}")
    return stored, errors


def free_document_kv(tenant: str, collection: str, doc_id: str) -> int:
    """Drop a deleted document's states from every store a pipeline of the tenant reads; returns how many."""
    from ragpress.generators.kv_context import invalidate_document_kv, kv_owner
    from ragpress.workers import runtime

    owner = kv_owner(tenant, collection, doc_id)
    configs = kv_configs(runtime.job_store().engine, tenant)
    return sum(invalidate_document_kv(owner, kv_store) for kv_store in _stores(configs))


def _stores(configs: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """The distinct stores named by ``configs``, and always the server's default one."""
    stores: dict[str, dict[str, Any] | None] = {"null": None}
    for config in configs:
        stores[json.dumps(config.get("store"), sort_keys=True, default=str)] = config.get("store")
    return list(stores.values())
