"""Retrieval quality of fixed-size vs late vs situated chunking with the same embedder and the same chunks.

Run by hand (heavy; nice it on a shared machine):

    nice -n 10 python -m ragpress.bench.chunking

Datasets (from ../shared/datasets, where chunks need their document):
- SciFact: a document is an abstract (title + sentences); a query is a train claim with evidence; the
  relevant chunks are those holding an evidence sentence. Corpus: every abstract cited as evidence plus
  ``--scifact-distractors`` random others.
- HotpotQA by title (the issue's grouping): a document is the passages of one title (each title has one
  passage of several sentences here; the whole 994-passage corpus); relevant = chunks holding a supporting
  fact sentence.
- HotpotQA / MuSiQue long: a document is the whole context of one question (10 / 20 passages, "title" then
  text, concatenated; 1-3k tokens, read through overlapping windows); relevant = chunks holding a supporting
  fact (sentence / paragraph). Note these passages are unrelated to each other (distractors).

Queries are split in two by a hash of their id: each strategy's weights (late: ``local_weight``; situated:
``context_weight`` and ``local_weight``) are picked on the ``dev`` half (best mean nDCG@10 over the datasets,
the smaller weights on a tie) and every strategy is reported on the ``eval`` half. All strategies cut
documents with the same SentenceChunker (asserted) and use the same model; they differ only in how chunk
vectors are made. Exact cosine search in numpy. Late and situated timings include the pass that reads each
chunk alone (needed whenever ``local_weight`` > 0).
Vectors and timings are cached in bench/results/chunking/ (delete it to re-measure throughput).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from haystack import Document

from ragpress.base import schema
from ragpress.base.model_loading import sentence_transformer
from ragpress.indexers.embedders import DocumentEmbedder
from ragpress.indexers.late_chunker import LateChunker, blend
from ragpress.indexers.sentence_chunker import SentenceChunker
from ragpress.indexers.situated_chunker import SituatedChunker, SituatedParts, mix

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results" / "chunking"
MODEL = "all-MiniLM-L6-v2"
SITUATED_WEIGHTS = (0.0, 0.25, 0.5)  # context_weight: the window's share
LOCAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # local_weight: the share of the chunk read alone
VERSION = {"fixed": 1, "late": 2, "situated": 3}  # bump when a strategy's vectors change
TIE = 0.002  # nDCG@10 differences below this are noise at these query counts: prefer the simpler weight


@dataclass
class Query:
    id: str
    text: str
    evidence: dict[str, list[tuple[int, int]]]  # doc_id -> character spans of evidence in the document

    @property
    def split(self) -> str:
        return "dev" if int(hashlib.sha256(self.id.encode()).hexdigest(), 16) % 2 == 0 else "eval"


@dataclass
class Dataset:
    name: str
    documents: list[Document]
    queries: list[Query]
    notes: str = ""


@dataclass
class Run:
    chunks: list[Document]
    vectors: dict[str, np.ndarray]  # variant -> [n_chunks, dim]
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- datasets


def _joined(parts: list[tuple[str, list[str]]]) -> tuple[str, list[list[tuple[int, int]]]]:
    """Text of ("title", [sentences]) passages joined with blank lines, and each sentence's span."""
    text, spans = "", []
    for title, sentences in parts:
        if text:
            text += "\n\n"
        if title:
            text += title + "\n\n"
        passage = []
        for k, sentence in enumerate(sentences):
            if k:
                text += " "
            passage.append((len(text), len(text) + len(sentence)))
            text += sentence
        spans.append(passage)
    return text, spans


def scifact(distractors: int, seed: int) -> Dataset:
    corpus = {str(r["doc_id"]): r for r in map(json.loads, (DATA / "scifact/corpus.jsonl").open())}
    claims = [r for r in map(json.loads, (DATA / "scifact/claims_train.jsonl").open()) if r["evidence"]]
    cited = sorted({d for c in claims for d in c["evidence"] if d in corpus})
    others = sorted(set(corpus) - set(cited))
    chosen = cited + random.Random(seed).sample(others, min(distractors, len(others)))
    documents, sentence_spans = [], {}
    for doc_id in chosen:
        record = corpus[doc_id]
        text, (title_part,) = _joined([(record["title"], [s.strip() for s in record["abstract"]])])
        sentence_spans[doc_id] = title_part
        documents.append(Document(content=text, meta={schema.DOC_ID: doc_id, "title": record["title"]}))
    queries = []
    for claim in claims:
        evidence = {d: [sentence_spans[d][i] for e in ev for i in e["sentences"]]
                    for d, ev in claim["evidence"].items() if d in sentence_spans}
        queries.append(Query(str(claim["id"]), claim["claim"], evidence))
    notes = f"{len(cited)} cited abstracts + {len(chosen) - len(cited)} random others (seed {seed})"
    return Dataset("SciFact", documents, queries, notes)


def hotpotqa() -> Dataset:
    documents, queries = [], []
    for record in json.load((DATA / "hipporag_mini/hotpotqa_train.json").open()):
        parts = [(title, [s.strip() for s in sentences if s.strip()]) for title, sentences in record["context"]]
        text, spans = _joined(parts)
        titles = [t for t, _ in parts]
        doc_id = record["_id"]
        evidence = [spans[titles.index(t)][i] for t, i in record["supporting_facts"]
                    if t in titles and i < len(spans[titles.index(t)])]
        documents.append(Document(content=text, meta={schema.DOC_ID: doc_id}))
        queries.append(Query(doc_id, record["question"], {doc_id: evidence}))
    return Dataset("HotpotQA long", documents, queries, "one document per question: its 10 passages")


def hotpotqa_titles() -> Dataset:
    """The issue's grouping: the passages of one title form a document (HotpotQA: one passage a title)."""
    corpus = json.load((DATA / "hipporag_mini/hotpotqa_train_corpus.json").open())
    documents, spans = [], {}
    for title, sentences in corpus.items():
        text, (passage,) = _joined([(title, [s.strip() for s in sentences if s.strip()])])
        spans[title] = passage
        documents.append(Document(content=text, meta={schema.DOC_ID: title, "title": title}))
    queries = []
    for record in json.load((DATA / "hipporag_mini/hotpotqa_train.json").open()):
        evidence: dict[str, list[tuple[int, int]]] = {}
        for title, index in record["supporting_facts"]:
            if title in spans and index < len(spans[title]):
                evidence.setdefault(title, []).append(spans[title][index])
        queries.append(Query(record["_id"], record["question"], evidence))
    return Dataset("HotpotQA by title", documents, queries, "one document per title (the whole passage corpus)")


def musique() -> Dataset:
    documents, queries = [], []
    for record in json.load((DATA / "hipporag_mini/musique_train.json").open()):
        paragraphs = record["paragraphs"]
        text, spans = _joined([(p["title"], [p["paragraph_text"].strip()]) for p in paragraphs])
        evidence = [spans[k][0] for k, p in enumerate(paragraphs) if p["is_supporting"]]
        documents.append(Document(content=text, meta={schema.DOC_ID: record["id"]}))
        queries.append(Query(record["id"], record["question"], {record["id"]: evidence}))
    return Dataset("MuSiQue long", documents, queries, "one document per question: its 20 paragraphs")


# ---------------------------------------------------------------- strategies


def run_fixed(documents: list[Document], max_tokens: int) -> Run:
    chunker, embedder = SentenceChunker(max_tokens, tokenizer_model=MODEL), DocumentEmbedder(MODEL)
    chunker.warm_up()
    embedder.warm_up()
    start = time.perf_counter()
    chunks = embedder.run(documents=chunker.run(documents=documents)["documents"])["documents"]
    return Run(chunks, {"fixed": _matrix(chunks)}, time.perf_counter() - start)


def late_name(local: float) -> str:
    return f"late l={local:g}"


def situated_name(context: float, local: float) -> str:
    return f"situated w={context:g} l={local:g}"


def run_late(documents: list[Document], max_tokens: int) -> Run:
    chunker = LateChunker(MODEL, max_tokens)
    chunker.warm_up()
    start = time.perf_counter()
    parts = chunker.parts(documents)
    seconds = time.perf_counter() - start
    assert parts.local_vectors is not None
    vectors = {late_name(w): blend(parts.late_vectors, parts.local_vectors, w).numpy() for w in LOCAL_WEIGHTS}
    return Run(parts.chunks, vectors, seconds)


def run_situated(documents: list[Document], max_tokens: int) -> Run:
    chunker = SituatedChunker(MODEL, max_tokens)
    chunker.warm_up()
    start = time.perf_counter()
    parts: SituatedParts = chunker.parts(documents)
    seconds = time.perf_counter() - start
    vectors = {situated_name(w, local): mix(parts, w, local).numpy()
               for w in SITUATED_WEIGHTS for local in LOCAL_WEIGHTS}
    return Run(parts.chunks, vectors, seconds)


STRATEGIES: dict[str, Callable[[list[Document], int], Run]] = {
    "fixed": run_fixed, "late": run_late, "situated": run_situated,
}


def _matrix(chunks: list[Document]) -> np.ndarray:
    return np.asarray([c.embedding for c in chunks], dtype=np.float32)


def cached_run(dataset: Dataset, strategy: str, max_tokens: int) -> Run:
    """Vectors, chunk offsets and timing of one strategy on one dataset, from the cache when present."""
    parts = [dataset.name, dataset.notes, len(dataset.documents), strategy, max_tokens, MODEL, SITUATED_WEIGHTS,
             LOCAL_WEIGHTS]
    parts += [VERSION[strategy]] if VERSION[strategy] > 1 else []  # version 1 keys predate the field
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    path = RESULTS / f"{strategy}-{key}"
    if (path / "meta.json").exists():
        meta = json.loads((path / "meta.json").read_text())
        arrays = np.load(path / "vectors.npz")
        chunks = [Document(id=c[0], content="", meta={schema.DOC_ID: c[1], schema.START: c[2], schema.END: c[3]})
                  for c in meta["chunks"]]
        return Run(chunks, {k: arrays[k] for k in arrays.files}, meta["seconds"])
    run = STRATEGIES[strategy](dataset.documents, max_tokens)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "vectors.npz", **run.vectors)
    rows = [[c.id, c.meta[schema.DOC_ID], c.meta[schema.START], c.meta[schema.END]] for c in run.chunks]
    (path / "meta.json").write_text(json.dumps({"seconds": run.seconds, "chunks": rows}))
    return run


# ---------------------------------------------------------------- metrics


def relevance(chunks: list[Document], query: Query) -> np.ndarray:
    """1 for chunks whose span overlaps an evidence span of the query's documents."""
    labels = np.zeros(len(chunks), dtype=bool)
    for index, chunk in enumerate(chunks):
        spans = query.evidence.get(chunk.meta[schema.DOC_ID], ())
        start, end = chunk.meta[schema.START], chunk.meta[schema.END]
        labels[index] = any(s < end and start < e for s, e in spans)
    return labels


def score(vectors: np.ndarray, query_vectors: np.ndarray, labels: list[np.ndarray], k: int = 10) -> tuple[float, float]:
    """Mean nDCG@k and Recall@k (binary relevance) of exact cosine search."""
    scores = query_vectors @ vectors.T
    top = np.argsort(-scores, axis=1)[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcgs, recalls = [], []
    for row, relevant in zip(top, labels, strict=True):
        gains = relevant[row].astype(float)
        ideal = discounts[: min(k, int(relevant.sum()))].sum()
        ndcgs.append(float(gains @ discounts / ideal))
        recalls.append(float(gains.sum() / relevant.sum()))
    return float(np.mean(ndcgs)), float(np.mean(recalls))


# ---------------------------------------------------------------- main


def evaluate(dataset: Dataset, max_tokens: int) -> dict[str, dict]:
    runs = {name: cached_run(dataset, name, max_tokens) for name in STRATEGIES}
    reference = [(c.meta[schema.DOC_ID], c.meta[schema.START], c.meta[schema.END]) for c in runs["fixed"].chunks]
    for name, run in runs.items():
        spans = [(c.meta[schema.DOC_ID], c.meta[schema.START], c.meta[schema.END]) for c in run.chunks]
        assert spans == reference, f"{name} cut {dataset.name} differently from the fixed baseline"
    model = sentence_transformer(MODEL)
    chunks = runs["fixed"].chunks
    results: dict[str, dict] = {}
    for split in ("dev", "eval"):
        queries = [q for q in dataset.queries if q.split == split]
        labels = [relevance(chunks, q) for q in queries]
        keep = [i for i, lab in enumerate(labels) if lab.any()]
        queries, labels = [queries[i] for i in keep], [labels[i] for i in keep]
        query_vectors = model.encode([q.text for q in queries], normalize_embeddings=True, batch_size=64)
        for run in runs.values():
            for variant, vectors in run.vectors.items():
                ndcg, recall = score(vectors, query_vectors, labels)
                results.setdefault(variant, {"chunks_per_s": len(chunks) / run.seconds})[split] = (ndcg, recall)
        results.setdefault("_queries", {})[split] = len(queries)
    results["_chunks"] = {"n": len(chunks), "docs": len(dataset.documents)}
    return results


def pick(all_results: dict[str, dict], variants: list[str]) -> str:
    """The variant with the best mean dev nDCG@10 over the datasets; on a tie the earliest (smaller weights)."""
    means = {v: np.mean([r[v]["dev"][0] for r in all_results.values()]) for v in variants}
    best = max(means.values())
    return next(v for v in variants if means[v] >= best - TIE)


def picks(all_results: dict[str, dict]) -> set[str]:
    """Late's and situated's variants picked on dev, each from its own grid, simplest first."""
    late = [late_name(local) for local in LOCAL_WEIGHTS]
    situated = sorted((situated_name(w, local) for w in SITUATED_WEIGHTS for local in LOCAL_WEIGHTS),
                      key=lambda v: sum(float(x.split("=")[1]) for x in v.split()[1:]))
    return {pick(all_results, late), pick(all_results, situated)}


def print_table(all_results: dict[str, dict], chosen: set[str], datasets: dict[str, Dataset]) -> None:
    print("\n| dataset | strategy | nDCG@10 | Δ vs fixed | Recall@10 | chunks/s | dev nDCG@10 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, results in all_results.items():
        base = results["fixed"]["eval"][0]
        for variant in ("fixed", *[k for k in results if k.startswith(("late", "situated"))]):
            ndcg, recall = results[variant]["eval"]
            label = variant + (" (picked on dev)" if variant in chosen else "")
            print(f"| {name} | {label} | {ndcg:.4f} | {100 * (ndcg - base):+.1f} | {recall:.4f} | "
                  f"{results[variant]['chunks_per_s']:.0f} | {results[variant]['dev'][0]:.4f} |")
    print()
    for name, results in all_results.items():
        q, c = results["_queries"], results["_chunks"]
        print(f"- {name}: {datasets[name].notes}; {c['docs']} documents, {c['n']} chunks; "
              f"{q['eval']} eval / {q['dev']} dev queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact-distractors", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=64, help="chunk budget in tokens (all strategies)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="scifact,hotpotqa-titles,hotpotqa,musique")
    args = parser.parse_args()
    builders = {"scifact": lambda: scifact(args.scifact_distractors, args.seed), "hotpotqa": hotpotqa,
                "hotpotqa-titles": hotpotqa_titles, "musique": musique}
    datasets = {d.name: d for d in (builders[n]() for n in args.datasets.split(","))}
    all_results = {}
    for name, dataset in datasets.items():
        all_results[name] = evaluate(dataset, args.max_tokens)
        print(f"done {name}", flush=True)
    chosen = picks(all_results)
    print_table(all_results, chosen, datasets)


if __name__ == "__main__":
    main()
