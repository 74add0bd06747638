"""Calibrate the pruner's default relative sentence threshold on held-out training queries.

    OMP_NUM_THREADS=1 python -m ragpress.training.pruner_calibration --weights ragpress/scoring/weights/provence-minilm

The queries are the held-out calibration share of the *train* side (``ragpress.training.data.is_calibration``:
never trained on, never dev). Each query's context is built as the pruning benchmark builds it
(``ragpress.bench.rerank_prune --part prune``): its gold passages plus the best MiniLM hits that are not relevant,
``--context`` passages in all, because a relative rule depends on every passage of the call. The saved
``default_relative_threshold`` is the highest share of the query's best sentence score that still keeps
``--gold-recall`` of the held-out gold sentences (pooled over the datasets), the same recall rule that sets
the absolute ``default_threshold`` at the end of training.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ragpress.scoring.passage_scoring import score_passages
from ragpress.scoring.provence_model import CONFIG_FILE, DEFAULT_WEIGHTS, ProvenceModel, load
from ragpress.training import data, mining

logger = logging.getLogger("ragpress.training.pruner_calibration")

# Per dataset: SQuAD's held-out articles hold some 1,800 questions, the other sets 7 to 70; pooled uncapped,
# one dataset would set every threshold.
CALIBRATION_QUERIES = 100
# One held-out query: its text, its context passages and, per passage, the gold sentence indices.
Context = tuple[str, list[data.Passage], list[list[int]]]


def calibration_contexts(dataset: data.Dataset, context: int, limit: int = CALIBRATION_QUERIES) -> list[Context]:
    """Held-out train queries with sentence labels (at most ``limit``), each with its gold passages and hard
    negatives."""
    queries = data.sample([q for q in data.split(dataset, dev=False) if q.gold and data.is_calibration(q)], limit)
    hits = mining.search(dataset, [q.text for q in queries], k=context + 10) if queries else []
    contexts = []
    for query, ranked in zip(queries, hits, strict=True):
        negatives = [pid for pid, _ in ranked if pid not in query.relevant]
        pids = list(query.gold) + negatives[: max(0, context - len(query.gold))]
        passages = [dataset.passages[pid] for pid in pids]
        contexts.append((query.text, passages, [query.gold.get(pid, []) for pid in pids]))
    return contexts


def gold_ratios(model: ProvenceModel, tokenizer: object, contexts: list[Context]) -> list[float]:
    """Each gold sentence's keep score divided by the best sentence score of its query's context."""
    ratios = []
    for query, passages, gold in contexts:
        scores = score_passages(model, tokenizer, query, [(p.text, p.spans()) for p in passages])
        best = max((s for r in scores for s in r.sentence_scores), default=0.0)
        if best <= 0.0:
            continue
        for result, indices in zip(scores, gold, strict=True):
            ratios += [result.sentence_scores[i] / best for i in indices if i < len(result.sentence_scores)]
    return ratios


def recall_quantile(values: list[float], recall: float) -> float:
    """The highest cut-off that keeps at least ``recall`` of ``values`` (kept: value >= cut-off)."""
    return weighted_recall_quantile([(value, 1.0) for value in values], recall)


def weighted_recall_quantile(values: list[tuple[float, float]], recall: float) -> float:
    """The highest cut-off that keeps at least ``recall`` of the total weight of ``values`` ((value, weight)
    pairs; kept: value >= cut-off). With equal weights it is ``recall_quantile``."""
    if not values:
        raise ValueError("no gold sentences to calibrate on")
    total, kept = sum(w for _, w in values), 0.0
    for value, weight in sorted(values, reverse=True):
        kept += weight
        # With a tolerance: 0.9 * 100 is 90.00000000000001, which would keep one value more than asked.
        if kept >= recall * total - 1e-9 * total:
            return value
    return min(v for v, _ in values)


def calibrate_relative_threshold(
    model: ProvenceModel, tokenizer: object, root: Path | None, recall: float, context: int = 5,
    datasets: tuple[str, ...] = data.DATASETS,
) -> float:
    model.eval()
    ratios = []
    for name in datasets:
        found = gold_ratios(model, tokenizer, calibration_contexts(data.load(name, root), context))
        logger.info("%s: %d held-out gold sentences", name, len(found))
        ratios += found
    ratio = recall_quantile(ratios, recall)
    logger.info("relative threshold %.4f keeps %.0f%% of %d held-out gold sentences", ratio, 100 * recall,
                len(ratios))
    return ratio


def start(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, ProvenceModel, object]:
    """The calibration scripts' shared start: their arguments, logging, torch threads and the loaded weights."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=None, help="shared datasets directory")
    parser.add_argument("--gold-recall", type=float, default=0.97)
    parser.add_argument("--context", type=int, default=5, help="passages per held-out query")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    model, tokenizer = load(args.weights)
    model.eval()
    return args, model, tokenizer


def write_config_entry(weights: Path, key: str, value: object) -> Path:
    """Set one entry of the weights' config.json (the calibrated defaults live beside the weights)."""
    path = weights / CONFIG_FILE
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    args, model, tokenizer = start(__doc__, argv)
    ratio = calibrate_relative_threshold(model, tokenizer, args.data, args.gold_recall, args.context)
    path = write_config_entry(args.weights, "default_relative_threshold", ratio)
    print(f"default_relative_threshold = {ratio:.4f} written to {path}")


if __name__ == "__main__":
    main()
