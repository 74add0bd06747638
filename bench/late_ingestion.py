"""Ingestion with late-chunked multi-scale vectors against per-unit embedding: documents per second and nDCG@10.

Run by hand (heavy; quiet machine, one thread per process as workers run):

    OMP_NUM_THREADS=1 python -m ragpress.bench.late_ingestion --docs 1500 --questions 300

Both variants run the builtin ingestion pipeline (converter, multi-scale splitter, embedder) on the same SciFact
abstracts in batches of 16 documents, as a worker does, alternating batch by batch so load falls on both alike,
and write their units to an Edge index of their own (BM25 included). ``per-unit`` embeds each unit alone with
``DocumentEmbedder`` (the ingestion before issue 25); the others use ``LateUnitEmbedder`` at the local weights
given. Time = pipeline run + write, after one warm-up batch each. Retrieval: SciFact train claims, chunk level,
hybrid (dense + BM25, RRF) as the default query pipeline searches, and dense alone; a document's rank is its
best chunk's. The corpus is the claims' cited abstracts plus random others up to ``--docs``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haystack import Document, Pipeline

from ragpress.base import schema
from ragpress.base.edge_document_store import EdgeDocumentStore
from ragpress.evaluation.eval_sets import EvalQuestion, load
from ragpress.evaluation.intervals import bootstrap_ratio
from ragpress.evaluation.ranking import ndcg_at_10, recall_at
from ragpress.indexers.embedders import DocumentEmbedder, QueryEmbedder
from ragpress.indexers.late_unit_embedder import LateUnitEmbedder
from ragpress.pipelines.loader import builtin_yaml, load_pipeline

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
BATCH = 16
CHUNK = {"field": "meta.level", "operator": "==", "value": "chunk"}


def ingestion(embedder: Any) -> Pipeline:
    """The builtin ingestion pipeline without its writer (each variant writes to its own index), ``embedder`` in."""
    pipeline = load_pipeline(builtin_yaml("ingestion"))
    pipeline.remove_component("writer")
    pipeline.remove_component("embedder")
    pipeline.add_component("embedder", embedder)
    pipeline.connect("chunker.documents", "embedder.documents")
    pipeline.warm_up()
    return pipeline


def variants(weights: list[float]) -> dict[str, Pipeline]:
    found = {"per-unit": ingestion(DocumentEmbedder())}
    found.update({f"late l={w:g}": ingestion(LateUnitEmbedder(local_weight=w)) for w in weights})
    return found


def corpus(documents: list[dict[str, Any]], questions: list[EvalQuestion], size: int, seed: int) -> list[Document]:
    cited = {d for q in questions for d in q.relevant}
    others = [d for d in documents if d["id"] not in cited]
    chosen = [d for d in documents if d["id"] in cited]
    chosen += random.Random(seed).sample(others, max(0, min(len(others), size - len(chosen))))
    return [Document(content=d["text"], meta={**d["meta"], schema.DOC_ID: d["id"], schema.TENANT: "bench",
                                              schema.COLLECTION: "scifact", "content_type": "text/markdown"})
            for d in chosen]


def ingest(pipelines: dict[str, Pipeline], stores: dict[str, EdgeDocumentStore],
           documents: list[Document]) -> dict[str, float]:
    """Seconds each variant spent on all batches after the first (its warm-up)."""
    spent = dict.fromkeys(pipelines, 0.0)
    batches = [documents[i:i + BATCH] for i in range(0, len(documents), BATCH)]
    for number, batch in enumerate(batches):
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            units = pipeline.run({"converter": {"documents": batch}})["embedder"]["documents"]
            stores[name].write_documents(units)
            if number:
                spent[name] += time.perf_counter() - started
        print(f"\r{number + 1}/{len(batches)} batches", end="", flush=True)
    print()
    return spent


def ranked_documents(hits: list[Document]) -> list[str]:
    return list(dict.fromkeys(str(h.meta[schema.DOC_ID]) for h in hits))


def retrieval(store: EdgeDocumentStore, questions: list[EvalQuestion], vectors: list[list[float]],
              search: str) -> list[tuple[float, float]]:
    """(nDCG@10, recall@100) per question, searching chunks ``hybrid`` or ``dense``."""
    run: Callable[[EvalQuestion, list[float]], list[Document]] = {
        "hybrid": lambda q, v: store.hybrid_retrieval(query_embedding=v, query=q.text, filters=CHUNK, top_k=300),
        "dense": lambda q, v: store.embedding_retrieval(query_embedding=v, filters=CHUNK, top_k=300),
    }[search]
    out = []
    for question, vector in zip(questions, vectors, strict=True):
        ranked = ranked_documents(run(question, vector))
        out.append((ndcg_at_10(ranked, question.relevant), recall_at(ranked, question.relevant, 100)))
    return out


def paired(base: list[tuple[float, float]], other: list[tuple[float, float]]) -> str:
    differences = [(o[0] - b[0], 1.0) for b, o in zip(base, other, strict=True)]
    low, high = bootstrap_ratio(differences)
    mean = statistics.fmean(d for d, _ in differences)
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1500, help="abstracts ingested (cited ones first)")
    parser.add_argument("--questions", type=int, default=300, help="train claims sampled")
    parser.add_argument("--weights", default="0,0.25", help="LateUnitEmbedder local weights to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load(DATA, "beir")
    questions = data.sample(args.questions, args.seed)
    documents = corpus(data.documents, questions, args.docs, args.seed)
    pipelines = variants([float(w) for w in args.weights.split(",") if w])
    with tempfile.TemporaryDirectory() as folder:
        stores = {name: EdgeDocumentStore(path=f"{folder}/{i}", embedding_dim=384) for i, name in enumerate(pipelines)}
        spent = ingest(pipelines, stores, documents)
        counted = len(documents) - BATCH
        vectors = QueryEmbedder().encode([q.text for q in questions])
        scores = {(name, search): retrieval(store, questions, vectors, search)
                  for name, store in stores.items() for search in ("hybrid", "dense")}
        units = {name: store.count_documents() for name, store in stores.items()}
        for store in stores.values():
            store.close()
    print(f"SciFact: {len(documents)} abstracts ({counted} timed), {len(questions)} train claims\n")
    print("| variant | docs/s | vs per-unit | units | hybrid nDCG@10 | vs per-unit | R@100 | dense nDCG@10 "
          "| vs per-unit |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base_rate = counted / spent["per-unit"]
    for name in pipelines:
        rate = counted / spent[name]
        hybrid, dense = scores[(name, "hybrid")], scores[(name, "dense")]
        print(f"| {name} | {rate:.2f} | {rate / base_rate:.2f}x | {units[name]:,} "
              f"| {100 * statistics.fmean(s[0] for s in hybrid):.1f} | {paired(scores['per-unit', 'hybrid'], hybrid)} "
              f"| {100 * statistics.fmean(s[1] for s in hybrid):.1f} "
              f"| {100 * statistics.fmean(s[0] for s in dense):.1f} | {paired(scores['per-unit', 'dense'], dense)} |")


if __name__ == "__main__":
    main()
