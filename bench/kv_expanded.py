"""Time to first token of the KV generator behind the multi-scale expander, against the same pipeline without it.

    OMP_NUM_THREADS=1 python -m ragpress.bench.kv_expanded --articles 5 --questions 40

The expander merges neighbouring hits into one unit. Before, the KV generator found no cached states for a merged
unit and encoded it anew at query time; now it lays the unit out from its chunks' cached entries. Through the
service (embedded mode, a fresh ``RAGPRESS_HOME``): whole SQuAD dev articles (paragraphs joined) are ingested with
``kv_precompute: eager``, and each dev question about them runs through two tenant pipelines built from
``pipelines/pruned.yaml`` with the KV generator: with the expander, and without it (retriever straight into the
pruner). The gate is left out of both, so every question is answered. Per pipeline: median time to first token,
the median per-question ratio to the pipeline without the expander, passages found in the store or encoded, and
the context tokens read.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

KV_GENERATOR = {"type": "ragpress.generators.kv_generator.KVCacheGenerator",
                "init_parameters": {"model": "SmolLM2-135M-Instruct", "max_new_tokens": 1}}
PIPELINES = ("expanded", "not_expanded")


def pipeline_yaml(expand: bool) -> str:
    """pruned.yaml with the KV generator, without the gate and, unless ``expand``, without the expander."""
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "pipelines" / "pruned.yaml").read_text())
    dropped = {"gate"} | (set() if expand else {"expander"})
    spec["components"] = {name: c for name, c in spec["components"].items() if name not in dropped}
    spec["components"]["generator"] = KV_GENERATOR
    chain = ["embedder", "retriever", *(["expander"] if expand else []), "pruner", "generator"]
    outputs = {"embedder": "embedding", "retriever": "documents", "expander": "documents", "pruner": "documents"}
    inputs = {"retriever": "query_embedding"}
    spec["connections"] = [{"sender": f"{a}.{outputs[a]}", "receiver": f"{b}.{inputs.get(b, 'documents')}"}
                           for a, b in itertools.pairwise(chain)]
    return yaml.safe_dump(spec, sort_keys=False)


def articles(count: int, questions: int) -> tuple[list[tuple[str, str]], list[str]]:
    """The first ``count`` SQuAD dev articles as (title, text), and dev questions about them."""
    from ragpress.training import data

    dataset = data.load("squad")
    dev = [q for q in data.split(dataset, dev=True) if q.answerable]
    titles = list(dict.fromkeys(q.qid.split("/")[0] for q in data.sample(dev, None)))[:count]
    texts = [(t, "\n\n".join(p.text for pid, p in dataset.passages.items() if pid.split("#")[0] == t)) for t in titles]
    asked = [q.text for q in data.sample([q for q in dev if q.qid.split("/")[0] in titles], questions)]
    return texts, asked


def run(count: int, questions: int) -> dict[str, list[dict[str, Any]]]:
    from ragpress.base import schema
    from ragpress.base.settings import get_settings
    from ragpress.pipelines.query_pipeline import QueryRequest
    from ragpress.service import IncomingDocument, Service

    tenant, collection = schema.DEFAULT_TENANT, "articles"
    texts, asked = articles(count, questions)
    service = Service(get_settings())
    service.start()
    try:
        for name in PIPELINES:  # saved first: eager pre-compute computes states for the tenant's KV pipelines
            service.save_pipeline(tenant, name, pipeline_yaml(name == "expanded"))
        job = service.submit(tenant, collection, [IncomingDocument(text=t, id=title) for title, t in texts], "eager")
        finished = service.wait(tenant, job, timeout_s=7200)
        while finished["kv"].get("queued", 0):  # the states come from a follow-up task after indexing
            time.sleep(1)
            finished = service.job(tenant, job)
        print(f"ingested: {finished['status']}, KV states {finished['kv']}", flush=True)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in PIPELINES}
        for question in asked:
            for name in PIPELINES:
                answer = service.query(tenant, collection, QueryRequest(query=question, pipeline=name))
                results[name].append({"ttft_ms": answer["timings_ms"]["ttft"], **answer.get("kv_cache", {})})
        return results
    finally:
        service.stop()


def report(results: dict[str, list[dict[str, Any]]]) -> str:
    base = results["not_expanded"]
    lines = ["| pipeline | questions | TTFT ms (median) | vs without expander (median ratio) | found | encoded "
             "| context tokens (mean) |", "|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        ratio = statistics.median(r["ttft_ms"] / b["ttft_ms"] for r, b in zip(rows, base, strict=True))
        lines.append(f"| {name} | {len(rows)} | {statistics.median(r['ttft_ms'] for r in rows):.0f} | {ratio:.2f} "
                     f"| {sum(r.get('hits', 0) for r in rows)} | {sum(r.get('misses', 0) for r in rows)} "
                     f"| {statistics.fmean(r.get('tokens', 0) for r in rows):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=5)
    parser.add_argument("--questions", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragpress-kv-expanded-") as home:
        os.environ["RAGPRESS_HOME"] = home  # before the settings are first read
        os.environ.setdefault("RAGPRESS_MODELS_DIR", os.path.expanduser("~/.ragpress/models"))
        print(report(run(args.articles, args.questions)))


if __name__ == "__main__":
    main()
