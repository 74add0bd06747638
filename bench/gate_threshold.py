"""Where to put RelevanceGate's floor: best relevance score per question, answerable vs gold removed.

    nice -n 5 python -m bench.gate_threshold --questions 60

Questions are the held-out calibration share of the *train* side (``pruners.training.is_calibration``: never
trained on, never dev), so the floor is not tuned on the dev questions the answer-quality benchmark reports.
For each, ProvencePruner scores the top ``--pool`` MiniLM hits of the full corpus (answerable) and of the corpus
without the question's gold passages (unanswerable); the gate sees the best score. Printed: for each candidate
floor, the share of unanswerable questions it abstains on and of answerable ones it wrongly abstains on,
pooled over the datasets, and the highest floor that wrongly abstains on at most ``--max-false`` of the
answerable questions (a service that refuses answerable questions is worse than one that sometimes guesses).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.answer_quality import contexts
from pruners import data
from pruners.component import ProvencePruner
from pruners.training import is_calibration

FLOORS = tuple(round(0.02 * i, 2) for i in range(1, 31))


def best_scores(pruner: ProvencePruner, name: str, questions: int, pool: int,
                root: Path | None) -> tuple[list[float], list[float]]:
    dataset = data.load(name, root)
    queries = [q for q in data.split(dataset, dev=False) if is_calibration(q)][:questions]
    answerable, missing = [], []
    for query in queries:
        for scores, documents in zip((answerable, missing), contexts(dataset, query, pool), strict=True):
            kept = pruner.run(query=query.text, documents=documents)["documents"]
            scores.append(max((d.score or 0.0) for d in kept) if kept else 0.0)
    return answerable, missing


def rates(answerable: list[float], missing: list[float], floor: float) -> tuple[float, float]:
    """(abstained on unanswerable, abstained on answerable) at ``floor``."""
    return (sum(s < floor for s in missing) / len(missing), sum(s < floor for s in answerable) / len(answerable))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="shared datasets directory")
    parser.add_argument("--datasets", nargs="+", default=["xquad", "hotpotqa", "musique", "scifact"])
    parser.add_argument("--questions", type=int, default=60, help="held-out calibration questions per dataset")
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-false", type=float, default=0.05, help="tolerated abstention on answerable ones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pruner = ProvencePruner(top_k=args.pool)
    pooled: tuple[list[float], list[float]] = ([], [])
    for name in args.datasets:
        answerable, missing = best_scores(pruner, name, args.questions, args.pool, args.data)
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


if __name__ == "__main__":
    main()
