"""Reciprocal-rank fusion (Cormack et al.): one order from several rankings of the same items, by position alone.

The Edge store fuses its dense and sparse hits inside the engine with the same constant (``RRF_K``); this is the
same rule for rankings ragpress holds itself, e.g. the pruner's relevance order fused with retrieval's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragpress.base.edge_document_store import RRF_K


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]]) -> list[int]:
    """Item indices ordered by the sum over ``rankings`` of ``1 / (RRF_K + position)`` (positions from 0),
    best first; ties keep the lower index first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1 / (RRF_K + position)
    return sorted(fused, key=lambda i: (-fused[i], i))
