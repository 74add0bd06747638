"""A fitted logistic model that fuses a few named signals into one probability.

The fusion reranker (passages), the pruner's sentence fusion (sentences) and the relevance gate's sufficiency
model (questions) are each ``sigmoid(bias + sum(weight * signal))`` over their own signals; the weights are
fitted offline (``ragpress.training``) and shipped as small files read at query time.
"""

from __future__ import annotations

import math
from typing import Protocol


class LogisticWeights(Protocol):
    """A fitted logistic model: a weight per named feature and a bias."""

    weights: dict[str, float]
    bias: float


def check_logistic(kind: str, weights: dict[str, float], allowed: tuple[str, ...],
                   threshold: float | None = None) -> None:
    """What every fitted logistic model here must hold: known, non-empty features and a threshold in [0, 1]."""
    if not weights or set(weights) - set(allowed):
        raise ValueError(f"{kind} features must be a non-empty subset of {allowed}, got {sorted(weights)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{kind} threshold must be within [0, 1], got {threshold}")


def combine(weights: LogisticWeights, features: dict[str, list[float]]) -> list[float]:
    """The fused probability of each item (passages, sentences or questions, per model)."""
    count = len(next(iter(features.values())))
    logits = [weights.bias + sum(w * features[f][i] for f, w in weights.weights.items()) for i in range(count)]
    return [1 / (1 + math.exp(-min(max(z, -50.0), 50.0))) for z in logits]


def logit(probability: float) -> float:
    """The relevance logit back from a probability (clipped: float32 sigmoids saturate near 1e-7)."""
    p = min(max(probability, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))
