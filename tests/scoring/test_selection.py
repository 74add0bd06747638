"""What a call keeps: documents in the order a ranking asks for, and sentences by the absolute or relative rule."""

from itertools import pairwise

import pytest
from haystack import Document

from ragpress.scoring.selection import kept_sentences, relative_cutoff, select

pytestmark = pytest.mark.unit


def test_fused_ranking_puts_a_document_first_in_one_order_and_last_in_the_other_in_between():
    # input order a, b, c; relevance order c, a, b: reciprocal ranks a 1/60+1/61, b 1/61+1/62, c 1/62+1/60
    documents = [Document(id=i, content=i, score=s) for i, s in (("a", 0.5), ("b", 0.2), ("c", 0.9))]
    assert [d.id for d in select(documents, None, None, "relevance")] == ["c", "a", "b"]
    assert [d.id for d in select(documents, None, None, "input")] == ["a", "b", "c"]
    assert [d.id for d in select(documents, None, None, "fused")] == ["a", "c", "b"]
    assert [d.id for d in select(documents, 2, 0.3, "fused")] == ["a", "c"]


def test_the_threshold_is_inclusive_and_keeps_original_order():
    scores = [0.3, 0.05, 0.1, 0.9]
    assert kept_sentences(scores, 0.1) == [0, 2, 3]
    assert kept_sentences(scores, 0.0) == [0, 1, 2, 3]
    assert kept_sentences(scores, 0.95) == []


def test_raising_the_threshold_never_keeps_more():
    scores = [0.01, 0.2, 0.45, 0.6, 0.99]
    kept = [set(kept_sentences(scores, t)) for t in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0)]
    assert all(later <= earlier for earlier, later in pairwise(kept))


QUERY_SCORES = [[0.02, 0.004, 0.013], [0.001, 0.018], []]  # one query's passages (the last one empty)


def kept_relative(scores: list[list[float]], ratio: float) -> list[list[int]]:
    cutoff = relative_cutoff(scores, ratio)
    return [kept_sentences(passage, cutoff) for passage in scores]


def test_the_relative_rule_cuts_at_a_share_of_the_query_best_sentence_across_passages():
    assert relative_cutoff(QUERY_SCORES, 0.5) == pytest.approx(0.01)
    assert kept_relative(QUERY_SCORES, 0.5) == [[0, 2], [1], []]
    assert kept_relative(QUERY_SCORES, 0.0) == [[0, 1, 2], [0, 1], []]


def test_the_relative_rule_always_keeps_the_best_sentence_however_low_the_scores():
    tiny = [[s / 1000 for s in passage] for passage in QUERY_SCORES]
    assert kept_relative(tiny, 1.0) == [[0], [], []]
    assert kept_sentences(tiny[0], 0.0111) == []  # what the absolute default would have kept


def test_scaling_every_score_of_a_query_leaves_the_relative_kept_set_unchanged():
    for factor in (0.01, 3.0, 40.0):
        scaled = [[s * factor for s in passage] for passage in QUERY_SCORES]
        for ratio in (0.1, 0.3, 0.7, 0.95):
            assert kept_relative(scaled, ratio) == kept_relative(QUERY_SCORES, ratio)


def test_raising_the_relative_threshold_never_keeps_more_and_no_passage_means_no_cutoff():
    kept = [sum(map(len, kept_relative(QUERY_SCORES, r))) for r in (0.0, 0.2, 0.5, 0.9, 1.0)]
    assert kept == sorted(kept, reverse=True)
    assert relative_cutoff([], 0.5) == 0.0
