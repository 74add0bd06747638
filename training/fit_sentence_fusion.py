"""Fit the sentence fusion (``ragpress.pruners.sentence_fusion``) and its default threshold on held-out train queries.

    OMP_NUM_THREADS=1 python -m ragpress.training.fit_sentence_fusion --weights ragpress/scoring/weights/provence-minilm

The queries are the calibration share of the *train* side (``ragpress.training.data.is_calibration``): the pruner
never trained on them, so its keep and relevance scores there are what unseen queries get, and no dev query is read.
Each query's context is its gold passages plus MiniLM hard negatives (``ragpress.training.pruner_calibration``), as
the pruning benchmark builds it. Labels are the gold sentences of all five datasets; the threshold is set on the
human-labelled ones only (MuSiQue's are derived from answer strings and miss bridge sentences).

The feature set and L2 strength are chosen by five-fold cross-validation over queries: each setting's
out-of-fold probabilities give the threshold that keeps ``--gold-recall`` of the human-labelled gold sentences
(on average over the datasets, each weighing the same),
and the smallest setting removing within a point of the most context tokens there wins. The winner is
refitted on every query and saved, with that out-of-fold threshold, under ``sentence_fusion`` in the weights'
config.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ragpress.pruners.sentence_fusion import FEATURES, SentenceFusion, sentence_features
from ragpress.scoring.logistic_fusion import combine
from ragpress.scoring.passage_scoring import score_passages
from ragpress.scoring.provence_model import ProvenceModel
from ragpress.training import data
from ragpress.training.fit_fusion import fit_logistic
from ragpress.training.pruner_calibration import (
    calibration_contexts,
    start,
    weighted_recall_quantile,
    write_config_entry,
)

logger = logging.getLogger("ragpress.training.fit_sentence_fusion")

FOLDS = 5
L2_GRID = (1e-3, 1e-2, 1e-1)
FEATURE_SETS = [
    ("keep",),
    ("keep", "sentence_lexical", "passage_lexical"),
    ("keep", "relevance", "sentence_lexical", "passage_lexical"),
    FEATURES,
]
HUMAN_LABELLED = ("scifact", "xquad", "hotpotqa", "squad")
TOLERANCE = 0.01  # of context tokens removed


@dataclass
class Example:
    """One held-out query's context: per sentence, its features, gold flag and token count."""

    dataset: str
    features: dict[str, list[float]]
    gold: list[bool]
    tokens: list[int]


def examples(model: ProvenceModel, tokenizer: object, root: Path | None, context: int) -> list[Example]:
    found = []
    for name in data.DATASETS:
        for query, passages, gold in calibration_contexts(data.load(name, root), context):
            pairs = [(p.text, p.spans()) for p in passages]
            scores = score_passages(model, tokenizer, query, pairs)
            found.append(Example(
                name,
                sentence_features(query, pairs, scores),
                [i in set(g) for p, g in zip(passages, gold, strict=True) for i in range(len(p.sentences))],
                [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for p in passages for s in p.sentences],
            ))
    return found


def fit(train: list[Example], names: tuple[str, ...], l2: float) -> tuple[dict[str, float], float]:
    x = torch.tensor([[e.features[n][i] for n in names] for e in train for i in range(len(e.gold))])
    y = torch.tensor([float(g) for e in train for g in e.gold])
    weights, bias = fit_logistic(x, y, l2)
    return dict(zip(names, weights, strict=True)), bias


def probabilities(example: Example, weights: dict[str, float], bias: float) -> list[float]:
    model = SentenceFusion(weights=weights, bias=bias, threshold=0.0)
    return combine(model, {n: example.features[n] for n in weights})


def out_of_fold(found: list[Example], names: tuple[str, ...], l2: float) -> list[list[float]]:
    """Each query's probabilities from the model fitted on the other folds."""
    result: list[list[float]] = [[] for _ in found]
    for k in range(FOLDS):
        weights, bias = fit([e for i, e in enumerate(found) if i % FOLDS != k], names, l2)
        for i, example in enumerate(found):
            if i % FOLDS == k:
                result[i] = probabilities(example, weights, bias)
    return result


def threshold_and_removal(
    found: list[Example], scores: list[list[float]], recall: float, datasets: tuple[str, ...]
) -> tuple[float, float, float]:
    """The threshold keeping ``recall`` of the gold sentences of ``datasets`` on average over the datasets, and
    there the share of their context tokens removed and of gold sentences kept.

    Each dataset weighs the same: pooled, SQuAD's hundred easy answer sentences would let the threshold drop a
    tenth of HotpotQA's supporting facts while the pool still kept 97%, and other domains are what the
    threshold is for."""
    chosen = [(e, s) for e, s in zip(found, scores, strict=True) if e.dataset in datasets]
    gold: dict[str, list[float]] = {}
    for example, values in chosen:
        gold.setdefault(example.dataset, []).extend(p for p, g in zip(values, example.gold, strict=True) if g)
    weighted = [(value, 1 / len(values)) for values in gold.values() for value in values]
    threshold = weighted_recall_quantile(weighted, recall)
    return (threshold, *removal(chosen, threshold))


def removal(chosen: list[tuple[Example, list[float]]], threshold: float) -> tuple[float, float]:
    """(share of context tokens removed, share of gold sentences kept) at ``threshold``."""
    total = kept = gold = gold_kept = 0
    for example, scores in chosen:
        for p, g, n in zip(scores, example.gold, example.tokens, strict=True):
            total, kept = total + n, kept + n * (p >= threshold)
            gold, gold_kept = gold + g, gold_kept + (g and p >= threshold)
    return 1 - kept / max(1, total), gold_kept / max(1, gold)


def choose(found: list[Example], recall: float) -> tuple[tuple[str, ...], float, float]:
    """The (features, L2) and out-of-fold threshold to ship: among the settings whose removal of
    human-labelled context tokens, at the threshold keeping ``recall`` of their gold sentences, is within
    ``TOLERANCE`` of the best, the one with the fewest features (then the most removal): with about a hundred
    queries, smaller gaps are noise and a smaller model transfers better."""
    results = []
    for names in FEATURE_SETS:
        for l2 in L2_GRID:
            scores = out_of_fold(found, names, l2)
            threshold, removed, _ = threshold_and_removal(found, scores, recall, HUMAN_LABELLED)
            logger.info("%s l2 %g: threshold %.4f removes %.1f%%", "+".join(names), l2, threshold, 100 * removed)
            for name in HUMAN_LABELLED:
                share, kept = removal([(e, s) for e, s in zip(found, scores, strict=True) if e.dataset == name],
                                      threshold)
                logger.info("    %s: %.1f%% removed, %.1f%% gold kept", name, 100 * share, 100 * kept)
            results.append((removed, names, l2, threshold))
    best = max(removed for removed, *_ in results)
    removed, names, l2, threshold = min(
        (r for r in results if r[0] >= best - TOLERANCE), key=lambda r: (len(r[1]), -r[0])
    )
    logger.info("chosen: %s l2 %g, %.1f%% removed (best %.1f%%)", "+".join(names), l2, 100 * removed, 100 * best)
    return names, l2, threshold


def main(argv: list[str] | None = None) -> None:
    args, model, tokenizer = start(__doc__, argv)
    found = examples(model, tokenizer, args.data, args.context)
    logger.info("%d held-out queries, %d sentences", len(found), sum(len(e.gold) for e in found))
    names, l2, threshold = choose(found, args.gold_recall)
    weights, bias = fit(found, names, l2)
    note = (f"logistic fit on {len(found)} held-out train queries ({', '.join(data.DATASETS)}); features and "
            f"L2={l2:g} chosen by {FOLDS}-fold cross-validation; threshold keeps {100 * args.gold_recall:.0f}% "
            f"of the out-of-fold gold sentences of {', '.join(HUMAN_LABELLED)} (each dataset weighing the same); "
            "dev queries never read")
    fitted = SentenceFusion(weights=weights, bias=bias, threshold=threshold, fitted_on=note)
    path = write_config_entry(args.weights, "sentence_fusion", fitted.to_config())
    print(f"sentence_fusion {weights} bias {bias:.3f} threshold {threshold:.4f} written to {path}")


if __name__ == "__main__":
    main()
