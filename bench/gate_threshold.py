"""Where to put RelevanceGate's floor: best relevance score per question, answerable vs gold removed.

    nice -n 5 python -m ragpress.bench.gate_threshold --questions 60

Questions are the held-out calibration share of the *train* side (``ragpress.training.data.is_calibration``: never
trained on, never dev), so the floor is not tuned on the dev questions the answer-quality benchmark reports.
For each, ProvencePruner scores the MiniLM hits of the full corpus (answerable) and of the corpus without the
question's gold passages (unanswerable; SQuAD's unanswerable questions are its own, from the full corpus:
``ragpress.bench.answer_quality.labelled_contexts``) as ``pipelines/pruned.yaml`` sets it up (``--ranking input``:
the first ``--context`` hits; ``relevance``: its head's best ``--context`` of the top ``--pool``); the gate sees
the best score. Printed: for each candidate floor, the share of unanswerable questions it abstains on and of
answerable ones it wrongly abstains on, pooled over the datasets, and the highest floor that wrongly abstains on at
most ``--max-false`` of the answerable questions (a service that refuses answerable questions is worse than one
that sometimes guesses).

With ``--features`` it prints instead how well each signal of ``ragpress.rerankers.sufficiency`` separates the two
sets (AUC: the chance an answerable question scores above an unanswerable one; 0.5 is no separation), per
dataset and pooled, on the examples ``ragpress.training.fit_sufficiency`` fits on (generated answers included).

A second table does the same for ``RelevanceGate(min_sentence_score=...)``, the floor on the best pruner keep
score of any sentence of the ``--context`` passages the generator would read, alone and on top of the picked
relevance floor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ragpress.bench.answer_quality import labelled_contexts
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers import sufficiency
from ragpress.rerankers.relevance_gate import abstain_reason, best_sentence_score
from ragpress.scoring.selection import RANKINGS
from ragpress.training import answer_signals, data
from ragpress.training.fit_sufficiency import collect

FLOORS = tuple(round(0.02 * i, 2) for i in range(1, 31))
SENTENCE_FLOORS = tuple(round(0.005 * i, 3) for i in range(1, 41))
# Per question: (best passage relevance, best sentence keep score among the passages read).
Scores = tuple[float | None, float]


def best_scores(pruner: ProvencePruner, name: str, questions: int, pool: int, context: int,
                root: Path | None) -> tuple[list[Scores], list[Scores]]:
    dataset = data.load(name, root)
    queries = data.sample([q for q in data.split(dataset, dev=False) if data.is_calibration(q)], questions)
    answerable, missing = [], []
    for query, is_answerable, documents in labelled_contexts(dataset, queries, pool):
        kept = pruner.run(query=query.text, documents=documents)["documents"]
        best = max((d.score or 0.0) for d in kept) if kept else None
        (answerable if is_answerable else missing).append((best, best_sentence_score(kept[:context])))
    return answerable, missing


def rates(answerable: list[Scores], missing: list[Scores], floor: float,
          sentence_floor: float = 0.0) -> tuple[float, float]:
    """(abstained on unanswerable, abstained on answerable) with these relevance and sentence floors."""
    def share(scores: list[Scores]) -> float:
        return sum(bool(abstain_reason(r, s, floor, sentence_floor)) for r, s in scores) / len(scores)

    return share(missing), share(answerable)


def print_sentence_floors(pooled: tuple[list[Scores], list[Scores]], floor: float, max_false: float) -> None:
    print(f"\n| sentence floor | abstains on unanswerable / answerable (alone) | (with relevance floor {floor:.2f}) |")
    print("|---|---|---|")
    for sentence_floor in SENTENCE_FLOORS:
        alone, joint = rates(*pooled, 0.0, sentence_floor), rates(*pooled, floor, sentence_floor)
        print(f"| {sentence_floor:.3f} | {100 * alone[0]:.0f}% / {100 * alone[1]:.0f}% | "
              f"{100 * joint[0]:.0f}% / {100 * joint[1]:.0f}% |")
    for base in (0.0, floor):
        allowed = [f for f in SENTENCE_FLOORS if rates(*pooled, base, f)[1] <= max_false]
        best = max(allowed, default=0.0)
        on_missing, on_answerable = rates(*pooled, base, best)
        print(f"highest sentence floor within {100 * max_false:.0f}% false abstention with relevance floor "
              f"{base:.2f}: {best:.3f} ({100 * on_missing:.0f}% vs {100 * on_answerable:.0f}%)")


def print_feature_aucs(args: argparse.Namespace) -> None:
    examples = {name: collect(name, args.questions, args.pool, args.context, args.ranking, True, args.data)
                for name in args.datasets}
    examples["pooled"] = [e for found in examples.values() for e in found]
    print("| signal | " + " | ".join(f"{n} ({len(e)} contexts)" for n, e in examples.items()) + " |")
    print("|---" * (len(examples) + 1) + "|")
    for feature in sufficiency.FEATURES:
        aucs = [answer_signals.auc([x.features[feature] for x in e if x.answerable],
                                [x.features[feature] for x in e if not x.answerable]) for e in examples.values()]
        print(f"| {feature} | " + " | ".join(f"{a:.2f}" for a in aucs) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="shared datasets directory")
    parser.add_argument("--datasets", nargs="+", default=["xquad", "hotpotqa", "musique", "scifact", "squad"])
    parser.add_argument("--questions", type=int, default=60, help="held-out calibration questions per dataset")
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--context", type=int, default=5, help="passages the generator reads (sentence floor)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-false", type=float, default=0.05, help="tolerated abstention on answerable ones")
    parser.add_argument("--features", action="store_true", help="AUC of each sufficiency signal instead")
    parser.add_argument("--ranking", choices=RANKINGS, default="input",
                        help="the pruner's ordering (pipelines/pruned.yaml: input, so the gate reads the best of "
                             "the first --context hits; relevance: of the --pool hits its head ranks first)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.features:
        print_feature_aucs(args)
        return
    pruner = ProvencePruner(top_k=args.context, ranking=args.ranking)
    pooled: tuple[list[Scores], list[Scores]] = ([], [])
    for name in args.datasets:
        answerable, missing = best_scores(pruner, name, args.questions, args.pool, args.context, args.data)
        pooled[0].extend(answerable)
        pooled[1].extend(missing)
        print(f"{name}: {len(answerable)} questions")
    print("| floor | abstains on unanswerable | abstains on answerable | gap |\n|---|---|---|---|")
    for floor in FLOORS:
        on_missing, on_answerable = rates(*pooled, floor)
        print(f"| {floor:.2f} | {100 * on_missing:.0f}% | {100 * on_answerable:.0f}% | "
              f"{100 * (on_missing - on_answerable):.0f} |")
    allowed = [f for f in FLOORS if rates(*pooled, f)[1] <= args.max_false]
    best = max(allowed, default=0.0)
    on_missing, on_answerable = rates(*pooled, best)
    print(f"highest floor within {100 * args.max_false:.0f}% false abstention: {best:.2f} "
          f"({100 * on_missing:.0f}% vs {100 * on_answerable:.0f}%)")
    print_sentence_floors(pooled, best, args.max_false)


if __name__ == "__main__":
    main()
