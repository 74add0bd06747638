"""Answer F1 and abstention, with and without the reranker-pruner, on dev questions the models never trained on.

    nice -n 10 python -m ragpress.bench.answer_quality --datasets xquad hotpotqa --questions 30

For every dev question (training/data.py's hash-carved dev splits) the corpus is searched (MiniLM, or
hybrid MiniLM + BM25 with ``--candidates hybrid``) twice:
as it is (answerable) and with the question's gold passages removed (unanswerable: the answer is not in
the corpus any more). Each system (``--systems``) picks from the top ``--pool`` hits what the generator reads:

- ``retrieval``: the top ``--context`` passages as they are (the baseline);
- ``reranked``: the ``--context`` best by the fusion reranker (``ragpress.rerankers.reranker.Reranker``'s default);
- ``pruned``: ProvencePruner's ``--context`` best by its relevance head (``ranking="relevance"``; the shipped
  pipeline now keeps retrieval's order, ``pruned_input``), with only the sentences its rule keeps, then RelevanceGate
  (abstain when no passage clears ``--min-score``, or no sentence clears ``--min-sentence-score``);
- ``pruned_input``: the same passages as ``retrieval`` (its top ``--context``), pruned and gated as ``pruned``
  is (the pruner's ``ranking="input"``), which separates what pruning does from what its reranking does;
- ``pruned_fused``: as ``pruned``, but the ``--context`` kept are chosen by reciprocal-rank fusion of the
  retrieval order and the pruner's relevance (``ranking="fused"``);
- ``pruned_bridge``: as ``pruned_input``, also keeping the second-hop sentences of ``ragpress.pruners.bridge``.

Each is also scored as ``<system>+sufficiency``: the gate's learned sufficiency model (``--sufficiency``, at
its fitted threshold) abstains too when it judges the passages read do not answer (retrieval and reranked get
no relevance floor: their scores are not the pruner's probabilities the floors were calibrated on).

Reported per system and set: answer F1 (SQuAD normalisation, best over reference answers), how often it
abstained (the gate, or the model saying the passages do not hold the answer), and context tokens read.
The pruned system's answer is generated even where the gate abstains, so ``--gate-variants`` (pairs
``min_score:min_sentence_score``) can be scored on the same answers: abstention and F1 per variant.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from haystack import Document

from ragpress.base.model_loading import sentence_transformer
from ragpress.bench.rerank_prune import hybrid_rankings, to_document
from ragpress.evaluation.answers import f1
from ragpress.generators.local_generator import LocalGenerator
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers.relevance_gate import RelevanceGate, abstain_reason, best_sentence_score
from ragpress.rerankers.reranker import Reranker
from ragpress.rerankers.sufficiency import DEFAULT_SUFFICIENCY_NAME, SufficiencyWeights, evidence_features
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME
from ragpress.training import data, mining

# The systems the pruner scores (whose scores the floors were set on): its ranking and bridge rule.
PRUNED = {"pruned": ("relevance", False), "pruned_input": ("input", False), "pruned_fused": ("fused", False),
          "pruned_bridge": ("input", True)}
SYSTEMS = ("retrieval", "reranked", *PRUNED)


@dataclass
class Tally:
    f1: list[float] = field(default_factory=list)
    abstained: list[bool] = field(default_factory=list)
    context_tokens: list[int] = field(default_factory=list)

    def row(self, name: str, answerable: bool) -> str:
        score = f"{100 * statistics.mean(self.f1):.1f}" if answerable else "-"
        rate = 100 * statistics.mean(self.abstained)
        tokens = statistics.mean(self.context_tokens)
        return f"| {name} | {'answerable' if answerable else 'unanswerable'} | {score} | {rate:.0f}% | {tokens:.0f} |"


def rankings(dataset: data.Dataset, queries: list[data.Query], k: int, candidates: str) -> list[list[str]]:
    """Each question's top-k passage ids by MiniLM dense retrieval or ragpress's hybrid (dense + BM25, RRF)."""
    if candidates == "hybrid":
        return hybrid_rankings(dataset, queries, k)
    return [[pid for pid, _ in hits] for hits in mining.search(dataset, [q.text for q in queries], k=k)]


def contexts(dataset: data.Dataset, query: data.Query, ranked: list[str],
             pool: int) -> tuple[list[Document], list[Document]]:
    """The top ``pool`` hits for the question, from the full corpus and from the corpus without its gold."""
    relevant = set(query.relevant)
    full = [to_document(dataset.passages[pid]) for pid in ranked[:pool]]
    without = [to_document(dataset.passages[pid]) for pid in ranked if pid not in relevant][:pool]
    return full, without


def question_contexts(dataset: data.Dataset, queries: list[data.Query], pool: int, candidates: str = "dense",
                      ) -> Iterator[tuple[data.Query, tuple[list[Document], list[Document]]]]:
    """Each question with its answerable and gold-removed contexts (``contexts``), ranked in one search."""
    depth = pool + max((len(q.relevant) for q in queries), default=0)
    for query, hits in zip(queries, rankings(dataset, queries, depth, candidates), strict=True):
        yield query, contexts(dataset, query, hits, pool)


def labelled_contexts(dataset: data.Dataset, queries: list[data.Query], pool: int,
                      ) -> Iterator[tuple[data.Query, bool, list[Document]]]:
    """Each question's contexts, labelled answerable or not. A dataset with unanswerable questions of its own
    (SQuAD 2.0, written beside a paragraph on their topic) gives each question once, from the full corpus,
    labelled by the dataset; any other gives each question twice: from the full corpus (answerable) and
    without its gold passages (unanswerable)."""
    natural = any(not q.answerable for q in dataset.queries)
    for query, (full, without) in question_contexts(dataset, queries, pool):
        yield query, query.answerable, full
        if not natural:
            yield query, False, without


@dataclass
class GatedAnswer:
    """One system's answer to one question before the gate, with what the gate reads."""

    f1: float
    declined: bool  # the model said the passages do not hold the answer
    context_tokens: int
    best_score: float | None  # None: no passage reached the generator
    best_sentence: float
    sufficiency: float  # the sufficiency model's probability that the passages answer

    def gated(self, min_score: float, min_sentence_score: float | None, min_sufficiency: float | None = None) -> bool:
        return bool(abstain_reason(self.best_score, self.best_sentence, min_score, min_sentence_score,
                                   self.sufficiency, min_sufficiency))


def gated_answer(generator: LocalGenerator, query: str, documents: list[Document], answers: list[str],
                 weights: SufficiencyWeights) -> GatedAnswer:
    result = generator.run(query=query, documents=documents)
    meta = result["meta"][0]
    evidence = evidence_features(sentence_transformer(weights.embedder), query, documents, weights.weights)
    best = max((d.score or 0.0) for d in documents) if documents else None
    return GatedAnswer(f1(result["replies"][0], answers), bool(meta.get("abstained")),
                       int(meta.get("prompt_tokens", 0)), best, best_sentence_score(documents),
                       weights.probability(evidence))


def tally_gated(answers: list[GatedAnswer], min_score: float, min_sentence_score: float | None,
                min_sufficiency: float | None = None) -> Tally:
    """A system's tally when the gate uses these floors (a gated question reads no context; ``-inf`` and two
    Nones: no gate)."""
    tally = Tally()
    for a in answers:
        gated = a.gated(min_score, min_sentence_score, min_sufficiency)
        tally.f1.append(0.0 if gated else a.f1)
        tally.abstained.append(gated or a.declined)
        tally.context_tokens.append(0 if gated else a.context_tokens)
    return tally


def abstention_line(system: str, answerable: Tally, missing: Tally) -> str:
    on_answerable = statistics.mean(answerable.abstained)
    on_missing = statistics.mean(missing.abstained)
    ratio = f"{on_missing / on_answerable:.1f}x" if on_answerable else ("never on answerable" if on_missing
                                                                      else "never")
    return (f"- {system}: abstains {100 * on_missing:.0f}% on unanswerable vs {100 * on_answerable:.0f}% "
            f"on answerable ({ratio})")


def run(args: argparse.Namespace) -> None:
    generator = LocalGenerator(max_new_tokens=args.new_tokens, max_context_tokens=args.max_context_tokens)
    gate = RelevanceGate(min_score=args.min_score, min_sentence_score=args.min_sentence_score)
    weights = SufficiencyWeights.load(args.sufficiency)
    readers = {name: reader for name, reader in context_readers(args).items() if name in args.systems}
    # Only the pruner's scores are the probabilities the relevance floors were calibrated on.
    floors = {name: (gate.min_score, gate.min_sentence_score) if name in PRUNED else (-math.inf, None)
              for name in readers}
    for name in args.datasets:
        dataset = data.load(name, args.data)
        queries = data.sample([q for q in data.split(dataset, dev=True) if q.answers], args.questions)
        answered: dict[tuple[str, bool], list[GatedAnswer]] = {(s, ok): [] for s in readers for ok in (True, False)}
        started = time.time()
        for query, pair in question_contexts(dataset, queries, args.pool, args.candidates):
            for answerable, documents in zip((True, False), pair, strict=True):
                for system, reader in readers.items():
                    answered[system, answerable].append(gated_answer(
                        generator, query.text, reader(query.text, documents), query.answers, weights))
        tallies = {}
        for (system, answerable), answers in answered.items():
            tallies[system, answerable] = tally_gated(answers, *floors[system])
            tallies[f"{system}+sufficiency", answerable] = tally_gated(answers, *floors[system], weights.threshold)
        systems = list(dict.fromkeys(system for system, _ in tallies))
        print(f"\n## {name}: {len(queries)} dev questions, {time.time() - started:.0f}s")
        print("| system | set | answer F1 | abstained | context tokens |\n|---|---|---|---|---|")
        for system in systems:
            for answerable in (True, False):
                print(tallies[system, answerable].row(system, answerable))
        for system in systems:
            print(abstention_line(system, tallies[system, True], tallies[system, False]))
        if "pruned" in readers:
            print_gate_variants(args.gate_variants, {ok: answered["pruned", ok] for ok in (True, False)})


def context_readers(args: argparse.Namespace) -> dict[str, Callable[[str, list[Document]], list[Document]]]:
    """Each system's choice, from the retrieved pool, of what the generator reads."""
    pruner = ProvencePruner(model=args.pruner, threshold=args.threshold, top_k=args.context)
    reranker = Reranker(top_k=args.context)
    readers: dict[str, Callable[[str, list[Document]], list[Document]]] = {
        "retrieval": lambda query, pool: pool[: args.context],
        "reranked": lambda query, pool: reranker.run(query=query, documents=pool)["documents"],
    }
    for system, (ranking, bridge) in PRUNED.items():
        readers[system] = lambda query, pool, r=ranking, b=bridge: pruner.run(
            query=query, documents=pool, ranking=r, bridge=b)["documents"]
    return readers


def print_gate_variants(variants: list[str], pruned: dict[bool, list[GatedAnswer]]) -> None:
    if not variants:
        return
    print("\n| gate (min_score : min_sentence_score) | answer F1 | abstains on unanswerable | on answerable |")
    print("|---|---|---|---|")
    for variant in variants:
        min_score, _, sentence = variant.partition(":")
        floors = (float(min_score), float(sentence) if sentence else None)
        answerable, missing = (tally_gated(pruned[ok], *floors) for ok in (True, False))
        print(f"| {variant} | {100 * statistics.mean(answerable.f1):.1f} | "
              f"{100 * statistics.mean(missing.abstained):.0f}% | {100 * statistics.mean(answerable.abstained):.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="shared datasets directory (default ../shared/datasets)")
    parser.add_argument("--datasets", nargs="+", default=["xquad", "hotpotqa"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--questions", type=int, default=30, help="N dev questions per dataset (data.sample)")
    parser.add_argument("--pool", type=int, default=10, help="retrieved passages the pruner reranks")
    parser.add_argument("--context", type=int, default=5, help="passages the generator reads")
    parser.add_argument("--candidates", choices=("dense", "hybrid"), default="dense",
                        help="the retrieval that fills the pool: MiniLM dense, or hybrid dense + BM25 (RRF)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="pruner sentence threshold (default: the weights' calibrated one)"
    )
    parser.add_argument("--pruner", default=DEFAULT_MODEL_NAME, help="the pruner's weights (name or directory)")
    parser.add_argument("--min-score", type=float, default=RelevanceGate().min_score, help="abstention floor")
    parser.add_argument("--min-sentence-score", type=float, default=RelevanceGate().min_sentence_score,
                        help="abstain also when no kept sentence's keep score reaches this")
    parser.add_argument("--sufficiency", default=DEFAULT_SUFFICIENCY_NAME,
                        help="the gate's sufficiency weights (name or file) for the pruned+sufficiency system")
    parser.add_argument("--gate-variants", nargs="*", default=[],
                        help="other gates scored on the same answers, as min_score:min_sentence_score")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--max-context-tokens", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.data:
        from pathlib import Path

        args.data = Path(args.data)
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
