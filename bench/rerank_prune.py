"""Benchmark the reranker and the pruner on dev splits the model never trained on (see training/data.py).

    nice -n 10 python -m ragpress.bench.rerank_prune --part all

- rerank: nDCG@10 on SciFact dev claims (or other datasets' dev queries: ``--rerank-datasets``), MiniLM
  retrieval alone and hybrid retrieval alone vs MiniLM top-``depth`` reranked by each of ``--rerankers``.
- prune: per dataset (SciFact evidence, XQuAD and SQuAD answer sentences, HotpotQA supporting facts), the context
  of a query is its labelled gold passages plus the top MiniLM hits that are not relevant (``--context``
  passages in all); two tables give, per absolute threshold and per relative threshold (share of the query's
  best sentence score), the fraction of context tokens removed and of gold sentences kept. With several
  ``--weights`` each is run in turn, and a last table puts their default rules side by side with 95%
  intervals and the most each curve removes while keeping 95% of the gold sentences.
- latency: rerank+prune of 5 and 20 passages of ~200 tokens (``--latency-passages``), median over repeats, fp32
  vs dynamic int8, with the fusion reranker (rerank only) on the same passages for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from haystack import Document

from ragpress.evaluation.intervals import bootstrap_ratio
from ragpress.evaluation.ranking import ndcg_at_10
from ragpress.pruners.bridge import bridged_sentences
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers.fusion import DEFAULT_FUSION_NAME
from ragpress.rerankers.reranker import Reranker
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME
from ragpress.scoring.selection import RANKINGS, kept_sentences, select
from ragpress.scoring.sentences import document_spans
from ragpress.training import data, mining

THRESHOLDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
RATIOS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
# Per context passage: (sentence token counts, sentence scores, gold flags, is gold passage, query's best score,
# sentences the bridge rule adds at the pruner's default cutoff, the query's number).
PruneRecord = tuple[list[int], list[float], list[bool], bool, float, list[int], int]
# The criterion's floor on gold sentences kept, at which the curves are compared.
TARGET_KEPT = 0.95


def to_document(passage: data.Passage, titles: bool = True) -> Document:
    """The passage as ingestion would index it: its sentence spans (so gold indices line up exactly with
    kept_sentences) and, with ``titles``, its article's title."""
    meta: dict[str, Any] = {"sentences": [list(s) for s in passage.spans()]}
    if titles and passage.title:
        meta["title"] = passage.title
    return Document(id=passage.pid, content=passage.text, meta=meta)


def add_rerank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rerank-datasets", nargs="+", default=["scifact"], choices=data.DATASETS,
                        help="dev queries of these datasets for the rerank part (the criterion: scifact)")
    parser.add_argument("--rerankers", nargs="+", default=[DEFAULT_FUSION_NAME, DEFAULT_MODEL_NAME],
                        help="Reranker models compared (names, fusion files, weights dirs or CrossEncoders)")
    parser.add_argument("--rankings", nargs="+", default=["relevance"], choices=RANKINGS,
                        help="orders scored per reranker: its own (relevance), or fused with retrieval's (fused)")
    parser.add_argument("--no-hybrid", action="store_true", help="skip the hybrid retrieval baseline")
    parser.add_argument("--candidates", choices=("dense", "hybrid"), default="dense",
                        help="which retrieval's top --depth the rerankers reorder (the criterion: dense)")


def hybrid_rankings(dataset: data.Dataset, queries: list[data.Query], k: int) -> list[list[str]]:
    """Top-k passage ids of ragpress's hybrid retrieval (MiniLM dense + Edge BM25, RRF) over the corpus,
    indexed into a throw-away Edge store with the same cached MiniLM vectors as the dense baseline."""
    import tempfile

    from ragpress.base.edge_document_store import EdgeDocumentStore
    from ragpress.base.model_loading import sentence_transformer

    pids, vectors = mining.corpus_embeddings(dataset)
    query_vectors = sentence_transformer(mining.EMBEDDER).encode(
        [q.text for q in queries], normalize_embeddings=True, show_progress_bar=False
    )
    with tempfile.TemporaryDirectory() as folder:
        store = EdgeDocumentStore(path=folder, embedding_dim=vectors.shape[1])
        store.write_documents([
            Document(id=str(i), content=dataset.passages[pid].text, embedding=vector.tolist(), meta={"pid": pid})
            for i, (pid, vector) in enumerate(zip(pids, vectors, strict=True))
        ])
        rankings = [
            [d.meta["pid"] for d in store.hybrid_retrieval(query_embedding=v.tolist(), query=q.text, top_k=k)]
            for q, v in zip(queries, query_vectors, strict=True)
        ]
        store.close()
    return rankings


def bench_rerank(args: argparse.Namespace) -> None:
    """nDCG@10 of dense retrieval alone, hybrid retrieval alone, and dense top-``depth`` reranked by each of
    ``--rerankers`` (passages below the depth keep their retrieval order)."""
    for name in args.rerank_datasets:
        dataset = data.load(name, args.data)
        queries = [q for q in data.split(dataset, dev=True) if q.relevant][: args.claims]
        hits = mining.search(dataset, [q.text for q in queries], k=100)
        rankings = [[pid for pid, _ in ranked] for ranked in hits]
        rows = [("MiniLM retrieval alone", mean_ndcg(queries, rankings), 0.0)]
        if not args.no_hybrid or args.candidates == "hybrid":
            started = time.time()
            hybrid = hybrid_rankings(dataset, queries, args.depth)
            rows.append(("hybrid retrieval alone (dense + BM25, RRF)", mean_ndcg(queries, hybrid),
                         time.time() - started))
            rankings = hybrid if args.candidates == "hybrid" else rankings
        retrieval = "MiniLM" if args.candidates == "dense" else "hybrid"
        for model in args.rerankers:
            started = time.time()
            reranked = rerank_all(model, dataset, queries, rankings, args.depth, args.rankings)
            seconds = time.time() - started
            for ranking, orders in reranked.items():
                fused = "" if ranking == "relevance" else f", {ranking} with retrieval's order"
                rows.append((f"{retrieval} top {args.depth} + Reranker({model}){fused}", mean_ndcg(queries, orders),
                             seconds))
        print(f"\n## rerank: {name} dev queries (n={len(queries)}), depth {args.depth}")
        print("| system | nDCG@10 | seconds |\n|---|---|---|")
        for system, score, seconds in rows:
            print(f"| {system} | {score:.1f} | {seconds:.0f} |")


def mean_ndcg(queries: list[data.Query], rankings: list[list[str]]) -> float:
    return 100 * statistics.mean(ndcg_at_10(r, set(q.relevant)) for q, r in zip(queries, rankings, strict=True))


def rerank_all(
    model: str, dataset: data.Dataset, queries: list[data.Query], rankings: list[list[str]], depth: int,
    orders: Sequence[str] = ("relevance",),
) -> dict[str, list[list[str]]]:
    """Per ordering (ragpress.scoring.selection.RANKINGS), each query's ranking with its top ``depth`` reordered."""
    reranker = Reranker(model=model)
    reranker.warm_up()
    reranked: dict[str, list[list[str]]] = {ranking: [] for ranking in orders}
    for query, pids in zip(queries, rankings, strict=True):
        documents = [to_document(dataset.passages[pid]) for pid in pids[:depth]]
        scores = {d.id: d.score for d in reranker.run(query=query.text, documents=documents)["documents"]}
        scored = [replace(d, score=scores[d.id]) for d in documents]
        for ranking in orders:
            reranked[ranking].append([d.id for d in select(scored, None, None, ranking)] + pids[depth:])
    return reranked


def prune_records(args: argparse.Namespace, name: str, pruner: ProvencePruner) -> list[PruneRecord]:
    """One record per context passage of every dev query (see PruneRecord)."""
    dataset = data.load(name, args.data)
    queries = data.sample([q for q in data.split(dataset, dev=True) if q.gold], args.max_queries)
    hits = mining.search(dataset, [q.text for q in queries], k=args.context + 10)
    tokenizer = pruner._tokenizer
    records = []
    for number, (query, ranked) in enumerate(zip(queries, hits, strict=True)):
        negatives = [pid for pid, _ in ranked if pid not in query.relevant]
        pids = list(query.gold) + negatives[: max(0, args.context - len(query.gold))]
        documents = [to_document(dataset.passages[pid], args.titles) for pid in pids]
        scored = pruner.run(query=query.text, documents=documents, threshold=0.0)["documents"]
        sentence_scores = [d.meta["sentence_scores"] for d in scored]
        best = max((s for scores in sentence_scores for s in scores), default=0.0)
        bridged = bridged_sentences(query.text, [(d.content or "", document_spans(d)) for d in scored],
                                    sentence_scores, pruner.cutoff(sentence_scores))
        for document, added in zip(scored, bridged, strict=True):
            passage = dataset.passages[document.id]
            gold = set(query.gold.get(document.id, []))
            lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in passage.sentences]
            flags = [i in gold for i in range(len(passage.sentences))]
            records.append((lengths, document.meta["sentence_scores"], flags, bool(gold), best, added, number))
    return records


def prune_table(
    records: list[PruneRecord], gold_only: bool, thresholds: list[float], relative: bool = False,
    bridge: bool = False,
) -> list[tuple[float, float, float]]:
    """(threshold, tokens removed, gold kept) per threshold; ``relative``: thresholds are shares of the
    query's best sentence score (ProvencePruner's ``relative_threshold``); ``bridge``: with the sentences the
    bridge rule adds at the default cut-off (so only meaningful at the default threshold)."""
    rows = []
    for threshold in thresholds:
        counts = per_query_counts(records, gold_only, threshold, relative, bridge)
        total, kept_tokens, gold_total, gold_kept = (sum(c[i] for c in counts.values()) for i in range(4))
        rows.append((threshold, 1 - kept_tokens / max(1, total), gold_kept / max(1, gold_total)))
    return rows


def per_query_counts(records: list[PruneRecord], gold_only: bool, threshold: float, relative: bool = False,
                     bridge: bool = False) -> dict[int, list[int]]:
    """Per query: [context tokens, tokens kept, gold sentences, gold sentences kept] at ``threshold``."""
    counts: dict[int, list[int]] = {}
    for lengths, scores, flags, is_gold, best, added, number in records:
        if gold_only and not is_gold:
            continue
        kept = set(kept_sentences(scores, threshold * best if relative else threshold))
        kept |= set(added) if bridge else set()
        row = counts.setdefault(number, [0, 0, 0, 0])
        row[0] += sum(lengths)
        row[1] += sum(n for i, n in enumerate(lengths) if i in kept)
        row[2] += sum(flags)
        row[3] += sum(1 for i, f in enumerate(flags) if f and i in kept)
    return counts


def default_rule_summary(records: list[PruneRecord], threshold: float, relative: bool) -> str:
    """Tokens removed and gold kept at the default rule, with 95% bootstrap intervals over queries, and the
    most removal any threshold reaches while keeping TARGET_KEPT of the gold sentences (the curve)."""
    counts = list(per_query_counts(records, False, threshold, relative).values())
    removed = bootstrap_ratio([(c[0] - c[1], c[0]) for c in counts])
    kept = bootstrap_ratio([(c[3], c[2]) for c in counts])
    (_, removed_share, kept_share), = prune_table(records, False, [threshold], relative)
    grid = [round(10 ** (-4 + 4 * i / 200), 6) for i in range(200)]
    at_target = max((r for _, r, k in prune_table(records, False, grid) if k >= TARGET_KEPT), default=0.0)
    return (f"{100 * removed_share:.1f}% [{100 * removed[0]:.1f}-{100 * removed[1]:.1f}] removed, "
            f"{100 * kept_share:.1f}% [{100 * kept[0]:.1f}-{100 * kept[1]:.1f}] gold kept; "
            f"most removed at >= {100 * TARGET_KEPT:.0f}% kept: {100 * at_target:.1f}%")


def bench_prune(args: argparse.Namespace, pruner: ProvencePruner) -> list[str]:
    """Per dataset, the absolute and the relative threshold curves of the pruner's sentence scores (fused
    with lexical evidence when its weights carry a fusion), the pruner's default rule marked; returns a summary
    row per dataset (``default_rule_summary``)."""
    absolute_default, relative_default = pruner.default_rule()
    scores = "lexical fusion" if pruner.fusion() else "keep probabilities"
    print(f"\n# weights {pruner.model}; sentence scores: {scores}")
    summary = []
    for name in args.datasets:
        started = time.time()
        records = prune_records(args, name, pruner)
        queries = sum(1 for r in records if r[3])
        print(
            f"\n## prune: {name} dev ({len(records)} passages, {queries} gold, {time.time() - started:.0f}s)"
        )
        print_prune_table(records, "threshold", sorted({*THRESHOLDS, *filter(None, [absolute_default])}),
                          absolute_default, "default", relative=False)
        print_prune_table(records, "relative threshold", sorted({*RATIOS, *filter(None, [relative_default])}),
                          relative_default, "default", relative=True)
        default = [absolute_default if relative_default is None else relative_default]
        (_, removed, kept), = prune_table(records, False, default, relative_default is not None, bridge=True)
        print(f"\ndefault rule + bridge sentences (ProvencePruner(bridge=True)): {100 * removed:.1f}% of context "
              f"tokens removed, {100 * kept:.1f}% of gold sentences kept")
        questions = len({r[6] for r in records})
        summary.append(f"| {pruner.model} | {name} ({questions}) | "
                       f"{default_rule_summary(records, default[0], relative_default is not None)} |")
    return summary


def print_prune_table(records: list[PruneRecord], label: str, thresholds: list[float], marked: float | None,
                      mark: str, relative: bool) -> None:
    print(f"\n| {label} | tokens removed (all context) | gold kept | tokens removed (gold passages) |")
    print("|---|---|---|---|")
    for (t, removed, kept), (_, removed_gold, _) in zip(
        prune_table(records, False, thresholds, relative), prune_table(records, True, thresholds, relative),
        strict=True,
    ):
        label_t = f"{t:.3g} ({mark})" if t == marked else f"{t:.3g}"
        print(f"| {label_t} | {100 * removed:.1f}% | {100 * kept:.1f}% | {100 * removed_gold:.1f}% |")


def latency_documents(args: argparse.Namespace, tokenizer: object, count: int) -> tuple[str, list[Document]]:
    """``count`` SciFact dev-claim hits, each cut to its first ~200 tokens of whole sentences."""
    dataset = data.load("scifact", args.data)
    query = data.split(dataset, dev=True)[0]
    pids = [pid for pid, _ in mining.search(dataset, [query.text], k=count)[0]]
    documents = []
    for pid in pids:
        sentences, used = [], 0
        for sentence in dataset.passages[pid].sentences:
            if used >= 200:
                break
            sentences.append(sentence)
            used += len(tokenizer(sentence, add_special_tokens=False)["input_ids"])
        documents.append(to_document(data.Passage(pid, tuple(sentences))))
    return query.text, documents


def bench_latency(args: argparse.Namespace) -> None:
    print(
        f"\n## latency: rerank+prune, median of {args.repeats}, "
        f"torch threads {torch.get_num_threads()}, sentence fusion {'off' if args.no_sentence_fusion else 'on'}"
    )
    print("| variant | passages | passage tokens | median s | min s |\n|---|---|---|---|---|")
    variants = {
        "fp32": ProvencePruner(batch_size=args.latency_batch, sentence_fusion=not args.no_sentence_fusion),
        "int8 dynamic": ProvencePruner(quantize=True, batch_size=args.latency_batch,
                                       sentence_fusion=not args.no_sentence_fusion),
        # the fusion reranker ranks without pruning: what it would add in front of a generator
        "fusion reranker (rerank only)": Reranker(),
    }
    for ranker in variants.values():
        ranker.warm_up()
    tokenizer = variants["fp32"]._tokenizer
    for count in args.latency_passages:
        query, documents = latency_documents(args, tokenizer, count)
        tokens = sum(len(tokenizer(d.content, add_special_tokens=False)["input_ids"]) for d in documents)
        for name, ranker in variants.items():
            ranker.run(query=query, documents=documents)  # first call pays one-off allocation costs
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                ranker.run(query=query, documents=documents)
                times.append(time.perf_counter() - started)
            print(f"| {name} | {count} | {tokens} | {statistics.median(times):.3f} | {min(times):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("rerank", "prune", "latency", "all"), default="all")
    parser.add_argument("--data", default=None, help="shared datasets directory (default ../shared/datasets)")
    parser.add_argument("--depth", type=int, default=20, help="retrieved passages reranked per claim")
    parser.add_argument("--claims", type=int, default=None, help="first N SciFact dev claims (default all)")
    parser.add_argument("--context", type=int, default=5, help="passages per query in the pruning context")
    parser.add_argument("--max-queries", type=int, default=150, help="dev queries per dataset for pruning")
    parser.add_argument("--no-titles", dest="titles", action="store_false",
                        help="give the pruner passages without their article's title (as before titles were indexed)")
    parser.add_argument("--datasets", nargs="+", default=["scifact", "xquad", "squad", "hotpotqa_dev"])
    parser.add_argument("--weights", nargs="+", default=[DEFAULT_MODEL_NAME],
                        help="pruner weights (the shipped name or directories) to prune with, one after another")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latency-batch", type=int, default=20)
    parser.add_argument("--latency-passages", nargs="+", type=int, default=[5, 20])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", action="store_true", help="int8 model for the rerank/prune parts")
    parser.add_argument("--no-sentence-fusion", action="store_true",
                        help="prune by the raw keep probabilities (the rule before the lexical fusion)")
    add_rerank_arguments(parser)
    args = parser.parse_args()
    if args.data:
        from pathlib import Path

        args.data = Path(args.data)
    torch.set_num_threads(args.threads)
    if args.part in ("rerank", "all"):
        bench_rerank(args)
    if args.part in ("prune", "all"):
        summary = []
        for weights in args.weights:
            pruner = ProvencePruner(model=weights, quantize=args.quantize, sentence_fusion=not args.no_sentence_fusion)
            pruner.warm_up()
            summary += bench_prune(args, pruner)
        print("\n## prune at each weights' default rule (95% intervals over queries)\n")
        print("| weights | dev set (queries) | at the default rule |\n|---|---|---|")
        print("\n".join(summary))
    if args.part in ("latency", "all"):
        bench_latency(args)


if __name__ == "__main__":
    main()
