"""What one query's response is worth against its question's labels, and the summary of many.

A record is measured from the response REST returns, nothing else: the answer and its abstention flag, the
documents in rank order (their text, and what the pruner kept of it), the usage counts, the timings and the
KV cache's lookups. The summary gives every measure with a 95% interval where one means something.
"""

from __future__ import annotations

import statistics
from typing import Any

from ragpress.evaluation.answers import exact_match, f1
from ragpress.evaluation.eval_sets import EvalQuestion
from ragpress.evaluation.intervals import bootstrap_ratio, wilson
from ragpress.evaluation.ranking import ndcg_at_10, recall_at

STAGES = ("retrieve", "rerank", "prune", "ttft", "total")


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def measure(question: EvalQuestion, response: dict[str, Any]) -> dict[str, Any]:
    """One JSON-able record of ``response`` to ``question``."""
    documents = response.get("documents", [])
    ranked = list(dict.fromkeys(str(d.get("doc_id")) for d in documents))
    retrieved = _flat(" ".join(d.get("text") or "" for d in documents))
    read = _flat(" ".join(d["pruned_text"] if "pruned_text" in d else d.get("text") or "" for d in documents))
    present = [g for g in map(_flat, question.gold_sentences) if g and g in retrieved]
    usage, timings = response.get("usage", {}), response.get("timings_ms", {})
    record: dict[str, Any] = {
        "qid": question.qid, "answerable": question.answerable, "ranked": ranked[:100],
        "top_score": max((float(d.get("score") or 0.0) for d in documents), default=0.0),
        "context_tokens": int(usage.get("context_tokens", 0)),
        "kept_tokens": int(usage.get("context_tokens_after_pruning", usage.get("context_tokens", 0))),
        "gold_present": len(present), "gold_kept": sum(g in read for g in present),
        # a refusal writes no token, so it has no time to first token to count
        "timings_ms": {k: float(timings[k]) for k in STAGES if k in timings
                       and not (k == "ttft" and response.get("abstained"))},
    }
    if question.relevant:
        record["ndcg10"] = ndcg_at_10(ranked, question.relevant)
        record["recall100"] = recall_at(ranked, question.relevant, 100)
    if "answer" in response:
        answer = str(response["answer"])
        record.update(answer=answer, abstained=bool(response.get("abstained")),
                      abstain_reason=response.get("abstain_reason"))
        if question.answers:
            record.update(f1=f1(answer, list(question.answers)), em=float(exact_match(answer, list(question.answers))))
    if "kv_cache" in response:
        record["kv_cache"] = response["kv_cache"]
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every measure the records allow: a value, and ``(low, high)`` 95% bounds beside it where they apply."""
    summary: dict[str, Any] = {"questions": len(records)}
    for key in ("ndcg10", "recall100", "f1", "em"):
        values = [r[key] for r in records if key in r]
        if values:
            summary[key] = statistics.fmean(values)
            summary[f"{key}_ci"] = bootstrap_ratio([(v, 1.0) for v in values])
    context = [(r["context_tokens"] - r["kept_tokens"], r["context_tokens"]) for r in records if r["context_tokens"]]
    if context:
        summary["removed"] = sum(n for n, _ in context) / sum(d for _, d in context)
        summary["removed_ci"] = bootstrap_ratio(context)
    gold = [(r["gold_kept"], r["gold_present"]) for r in records if r["gold_present"]]
    if gold:
        summary["gold_kept"] = sum(n for n, _ in gold) / sum(d for _, d in gold)
        summary["gold_kept_ci"] = bootstrap_ratio(gold)
    for answerable in (False, True):
        answered = [r for r in records if "abstained" in r and r["answerable"] is answerable]
        if answered:
            key = "abstain_answerable" if answerable else "abstain_unanswerable"
            refused = sum(r["abstained"] for r in answered)
            summary[key], summary[f"{key}_ci"] = refused / len(answered), wilson(refused, len(answered))
    for stage in STAGES:
        times = [r["timings_ms"][stage] for r in records if stage in r["timings_ms"]]
        if times:
            summary[f"{stage}_ms"] = statistics.median(times)
    summary.update(_kv(records))
    return summary


def _kv(records: list[dict[str, Any]]) -> dict[str, float]:
    lookups = [r["kv_cache"] for r in records if "kv_cache" in r]
    if not lookups:
        return {}
    hits, misses = sum(k["hits"] for k in lookups), sum(k["misses"] for k in lookups)
    tokens = sum(k.get("tokens", 0) for k in lookups)
    # the cached tokens laid out but masked because the pruner dropped their sentences
    kept = sum(r["kept_tokens"] for r in records if "kv_cache" in r)
    return {"kv_hit_ratio": hits / (hits + misses) if hits + misses else 0.0,
            "kv_bytes_per_token": sum(k.get("stored_bytes", 0) for k in lookups) / tokens if tokens else 0.0,
            "kv_masked": max(0.0, 1 - kept / tokens) if tokens else 0.0}


def paired_f1_difference(baseline: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """``other``'s mean F1 minus ``baseline``'s over the questions both answered, with a 95% bootstrap interval that
    resamples questions, each keeping its pair ({} when they share none)."""
    base = {r["qid"]: r["f1"] for r in baseline if "f1" in r}
    differences = [(r["f1"] - base[r["qid"]], 1.0) for r in other if "f1" in r and r["qid"] in base]
    if not differences:
        return {}
    return {"f1_vs_first": sum(d for d, _ in differences) / len(differences),
            "f1_vs_first_ci": bootstrap_ratio(differences)}
