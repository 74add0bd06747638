"""The body of a query's response, assembled from a finished pipeline run: the documents, the context tokens the
generator read before and after pruning, the stage timings and, when the pipeline generates, the answer (and, from a
KV-cache generator, how many passages' cached states it found)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from haystack import Document

from ragpress.base import schema
from ragpress.generators.prompting import passage_text
from ragpress.pipelines.query_pipeline import QueryRun

# Meta the response gives in its own fields, or that only the server uses.
_INTERNAL_META = frozenset({schema.TENANT, schema.COLLECTION, schema.DOC_ID, schema.CONTENT_HASH, schema.LEVEL,
                            schema.SENTENCES, schema.PRUNED_TEXT, schema.KEPT_SENTENCES, schema.SENTENCE_SCORES,
                            schema.PARTS})


def query_response(run: QueryRun, count_tokens: Callable[[str], int], started: float) -> dict[str, Any]:
    """``count_tokens``: the generator's tokenizer; ``started``: when the query began (``time.perf_counter``)."""
    read = _final_documents(run.outputs)
    response: dict[str, Any] = {
        "documents": [_document_out(d) for d in _final_documents(run.outputs, past_refusals=True)],
        "usage": {
            "context_tokens": sum(count_tokens(d.content or "") for d in read),
            "context_tokens_after_pruning": sum(count_tokens(passage_text(d)) for d in read),
        },
        "timings_ms": dict(run.stage_ms),
    }
    replies = _first_output(run.outputs, "replies")
    if replies is not None:
        meta = (_first_output(run.outputs, "meta") or [{}])[0]
        response["answer"] = replies[0] if replies else ""
        # the generator's own counts of the prompt it read and the answer it wrote (an OpenAI-style usage)
        response["usage"].update({k: int(meta[k]) for k in ("prompt_tokens", "completion_tokens") if k in meta})
        response["abstained"] = bool(meta.get("abstained", False))
        if response["abstained"]:
            response["abstain_reason"] = _first_output(run.outputs, "abstain_reason") or "model_declined"
        response["timings_ms"]["ttft"] = round(float(meta.get("ttft_ms", 0.0)), 1)
        if "kv_chunks_loaded" in meta:
            response["kv_cache"] = _kv_cache(meta)
    response["timings_ms"]["total"] = round((time.perf_counter() - started) * 1000, 1)
    return response


def _kv_cache(meta: dict[str, Any]) -> dict[str, int]:
    """The KV generator's store lookups: passages whose states it found, and those it had to encode on the spot
    (``on_miss: encode``) or found missing before answering by prefill (``on_miss: prefill``); and the bytes the
    states it read take in the store, for the tokens they hold."""
    misses = int(meta.get("kv_chunks_encoded", 0)) + int(meta.get("kv_chunks_missing", 0))
    return {"hits": int(meta["kv_chunks_loaded"]), "misses": misses,
            "stored_bytes": int(meta.get("kv_stored_bytes", 0)), "tokens": int(meta.get("kv_context_tokens", 0))}


def _final_documents(outputs: dict[str, Any], past_refusals: bool = False) -> list[Document]:
    """The documents the generator read: the last stage's documents output (retriever, reranker, pruner).

    With ``past_refusals`` a gate that abstained is looked through, giving the documents it judged, so a
    refusal still shows the caller what was found and why it was not enough."""
    found: list[Document] = []
    for component_outputs in outputs.values():
        if not isinstance(component_outputs, dict) or not isinstance(component_outputs.get("documents"), list):
            continue
        if not (past_refusals and component_outputs.get("abstain_reason")):
            found = component_outputs["documents"]  # a run's outputs come in run order
    return found


def _document_out(document: Document) -> dict[str, Any]:
    meta = document.meta or {}
    out: dict[str, Any] = {
        "id": document.id, "doc_id": meta.get(schema.DOC_ID), "text": document.content or "",
        "score": document.score, "level": meta.get(schema.LEVEL), "sentences": meta.get(schema.SENTENCES, []),
        "meta": {k: v for k, v in meta.items() if k not in _INTERNAL_META},
    }
    if schema.PRUNED_TEXT in meta:
        out["pruned_text"] = meta[schema.PRUNED_TEXT]
        out["kept_sentences"] = meta.get(schema.KEPT_SENTENCES, [])
    return out


def _first_output(outputs: dict[str, Any], key: str) -> Any:
    for component_outputs in outputs.values():
        if isinstance(component_outputs, dict) and key in component_outputs:
            return component_outputs[key]
    return None
