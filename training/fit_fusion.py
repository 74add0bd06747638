"""Fit the fusion reranker's weights (``ragpress.rerankers.fusion``) on SciFact TRAIN claims; dev claims are never read.

    OMP_NUM_THREADS=1 python -m ragpress.training.fit_fusion --out rerankers/weights/fusion-minilm.json

Candidates are each claim's MiniLM top ``--depth`` (what the reranker sees at query time), labels the qrels.
A fixed share of the train claims (by hash) is held out to choose the feature set and the L2 strength by
nDCG@10; the chosen setting is then refitted on all train claims. The Provence model's relevance logit is
not offered: it was trained on these claims, so its weight fitted here would be overrated (the component
still accepts a weights file that names it).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ragpress.base.model_loading import sentence_transformer
from ragpress.base.settings import get_settings
from ragpress.evaluation.ranking import ndcg_at_10
from ragpress.rerankers import fusion
from ragpress.scoring import lexical
from ragpress.scoring.logistic_fusion import combine
from ragpress.training import data, mining

logger = logging.getLogger(__name__)

HOLDOUT_PERCENT = 25
L2_GRID = (0.0, 1e-3, 1e-2, 1e-1, 0.3, 1.0)
FEATURE_SETS = [
    ("dense",),
    ("dense", "sentence"),
    ("dense", "lexical"),
    ("sentence", "lexical"),
    ("dense", "sentence", "lexical"),
]


@dataclass
class Claim:
    qid: str
    pids: list[str]  # the MiniLM top-depth, best first
    relevant: set[str]
    features: dict[str, list[float]]


def is_holdout(qid: str) -> bool:
    digest = hashlib.sha256(f"fusion-holdout:scifact:{qid}".encode()).hexdigest()
    return int(digest, 16) % 100 < HOLDOUT_PERCENT


def claims_with_features(queries: list[data.Query], dataset: data.Dataset, depth: int) -> list[Claim]:
    """Each claim's top ``depth`` with the reranker's features: ``dense`` is retrieval's own cosine, and
    ``sentence`` is computed from each candidate's sentences embedded once (not once per claim)."""
    hits = mining.search(dataset, [q.text for q in queries], k=depth)
    pids = sorted({pid for ranked in hits for pid, _ in ranked})
    sentences = sentence_vectors(dataset, pids)
    query_vectors = sentence_transformer(mining.EMBEDDER).encode(
        [q.text for q in queries], normalize_embeddings=True, show_progress_bar=False
    )
    claims = []
    for query, vector, ranked in zip(queries, query_vectors, hits, strict=True):
        ids = [pid for pid, _ in ranked]
        features = {
            "dense": [s for _, s in ranked],
            "sentence": [float((sentences[pid] @ vector).max()) for pid in ids],
            "lexical": lexical.bm25_coverage(query.text, [dataset.passages[p].text for p in ids]),
        }
        claims.append(Claim(query.qid, ids, set(query.relevant), features))
    return claims


def sentence_vectors(dataset: data.Dataset, pids: list[str]) -> dict[str, np.ndarray]:
    """Normalised MiniLM embeddings of every sentence of ``pids`` (the slow part: cached on disk)."""
    texts = [s for pid in pids for s in dataset.passages[pid].sentences]
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    path = get_settings().home / "cache" / "rerank_prune" / f"{dataset.name}-sentences-{mining.EMBEDDER}-{digest}.npy"
    if path.is_file():
        vectors = np.load(path)
    else:
        logger.info("embedding %d sentences of %d passages (cached in %s)", len(texts), len(pids), path)
        vectors = sentence_transformer(mining.EMBEDDER).encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors.astype(np.float32))
    result, start = {}, 0
    for pid in pids:
        count = len(dataset.passages[pid].sentences)
        result[pid] = vectors[start : start + count]
        start += count
    return result


def fit(claims: list[Claim], names: tuple[str, ...], l2: float) -> fusion.FusionWeights:
    """Logistic regression of relevance on the features of every candidate of ``claims``."""
    x = torch.tensor([[c.features[n][i] for n in names] for c in claims for i in range(len(c.pids))])
    y = torch.tensor([float(p in c.relevant) for c in claims for p in c.pids])
    weights, bias = fit_logistic(x, y, l2)
    return fusion.FusionWeights(weights=dict(zip(names, weights, strict=True)), bias=bias)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[list[float], float]:
    """Weights and bias, on the raw feature scale, of a logistic regression of ``y`` on the columns of ``x``
    (LBFGS, full batch; a few weights need no more).

    Features are standardised so one L2 strength means the same for every one. The L2 penalty picks the
    direction (the ranking); a second, unpenalised fit of one scale and the bias along it undoes the
    shrinkage, so the output stays a calibrated probability a threshold can be set on."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w, _ = _logistic(z, y, l2)
    (scale,), bias = _logistic(z @ w[:, None], y, 0.0)
    weights = scale * w / std
    return [float(v) for v in weights], float(bias - (weights * mean).sum())


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()[0]


def mean_ndcg(claims: list[Claim], weights: fusion.FusionWeights) -> float:
    scores = []
    for claim in claims:
        fused = combine(weights, {n: claim.features[n] for n in weights.weights})
        order = [p for _, p in sorted(zip(fused, claim.pids, strict=True), key=lambda pair: -pair[0])]
        scores.append(ndcg_at_10(order, claim.relevant))
    return 100 * statistics.mean(scores)


def choose(claims: list[Claim], feature_sets: list[tuple[str, ...]]) -> tuple[tuple[str, ...], float]:
    """The (feature set, L2) with the best held-out nDCG@10 (ties: fewer features, then stronger L2)."""
    fit_part = [c for c in claims if not is_holdout(c.qid)]
    held = [c for c in claims if is_holdout(c.qid)]
    dense_only = 100 * statistics.mean(ndcg_at_10(c.pids, c.relevant) for c in held)
    logger.info("held-out train claims: %d (fit on %d); retrieval alone %.2f", len(held), len(fit_part), dense_only)
    best: tuple[float, int, float, tuple[str, ...]] | None = None
    for names in feature_sets:
        for l2 in L2_GRID:
            score = mean_ndcg(held, fit(fit_part, names, l2))
            logger.info("features %s l2 %g: held-out nDCG@10 %.2f", "+".join(names), l2, score)
            key = (round(score, 2), -len(names), l2, names)
            best = key if best is None or key[:3] > best[:3] else best
    assert best is not None
    return best[3], best[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=fusion.DEFAULT_FUSION_FILE)
    parser.add_argument("--depth", type=int, default=20, help="candidates per claim (the bench reranks 20)")
    parser.add_argument("--data", type=Path, default=None, help="shared datasets directory")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    dataset = data.load("scifact", args.data)
    claims = claims_with_features(data.split(dataset, dev=False), dataset, args.depth)
    names, l2 = choose(claims, FEATURE_SETS)
    weights = fit(claims, names, l2)
    note = (
        f"logistic fit on {len(claims)} SciFact train claims (MiniLM top {args.depth}); features and L2={l2:g} "
        f"chosen on the {HOLDOUT_PERCENT}% held-out train share; dev claims never read"
    )
    weights = fusion.FusionWeights(weights=weights.weights, bias=weights.bias, fitted_on=note)
    weights.save(args.out)
    logger.info("saved %s: %s bias %.3f", args.out, weights.weights, weights.bias)


if __name__ == "__main__":
    main()
