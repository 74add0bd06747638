"""Retrieval measures over one query's ranked ids: nDCG@10 with binary relevance, as BEIR reports it, and recall@k."""

from __future__ import annotations

import math
from collections.abc import Collection


def ndcg_at_10(ranked: list[str], relevant: Collection[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, pid in enumerate(ranked[:10]) if pid in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: Collection[str], k: int) -> float:
    """The share of ``relevant`` found in the first ``k`` of ``ranked`` (0 when nothing is relevant)."""
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0
