"""Reciprocal-rank fusion orders items by position alone, with the engine's own constant."""

from __future__ import annotations

import pytest

from ragpress.base.edge_document_store import RRF_K
from ragpress.scoring.rank_fusion import reciprocal_rank_fusion

pytestmark = pytest.mark.unit


def test_an_item_high_in_both_rankings_beats_one_first_in_a_single_ranking() -> None:
    assert reciprocal_rank_fusion([[0, 1, 2], [1, 2, 0]])[0] == 1


def test_one_ranking_comes_back_unchanged_and_ties_keep_the_lower_index_first() -> None:
    assert reciprocal_rank_fusion([[3, 0, 2]]) == [3, 0, 2]
    assert reciprocal_rank_fusion([[0, 1], [1, 0]]) == [0, 1]


def test_an_item_missing_from_a_ranking_only_gets_what_the_others_give() -> None:
    fused = reciprocal_rank_fusion([[0, 1], [1]])
    assert fused == [1, 0] and RRF_K == 60
