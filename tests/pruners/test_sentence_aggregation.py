"""How token keep probabilities become sentence decisions, and how long passages are cut into windows."""

from itertools import pairwise

import pytest
from ragpress.pruners.calibration import recall_quantile
from ragpress.pruners.scoring import (
    aggregate_sentences,
    kept_sentences,
    relative_cutoff,
    token_sentences,
    window_ranges,
)

pytestmark = pytest.mark.unit


def test_a_sentence_scores_the_mean_of_its_token_probabilities():
    probs = [0.9, 0.7, 0.1, 0.2, 0.3]
    owners = [0, 0, 1, 1, 1]
    assert aggregate_sentences(probs, owners, 2) == pytest.approx([0.8, 0.2])


def test_tokens_outside_every_sentence_do_not_count():
    assert aggregate_sentences([1.0, 0.0, 0.5], [-1, 0, 0], 1) == pytest.approx([0.25])


def test_a_sentence_without_tokens_scores_zero():
    assert aggregate_sentences([0.9], [1], 3) == [0.0, 0.9, 0.0]


def test_the_threshold_is_inclusive_and_keeps_original_order():
    scores = [0.3, 0.05, 0.1, 0.9]
    assert kept_sentences(scores, 0.1) == [0, 2, 3]
    assert kept_sentences(scores, 0.0) == [0, 1, 2, 3]
    assert kept_sentences(scores, 0.95) == []


def test_raising_the_threshold_never_keeps_more():
    scores = [0.01, 0.2, 0.45, 0.6, 0.99]
    kept = [set(kept_sentences(scores, t)) for t in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0)]
    assert all(later <= earlier for earlier, later in pairwise(kept))


def test_tokens_map_to_the_sentence_holding_their_first_character():
    spans = [(0, 10), (12, 20)]
    offsets = [(0, 4), (5, 10), (12, 15), (15, 20)]
    assert token_sentences(offsets, spans) == [0, 0, 1, 1]


def test_tokens_in_a_gap_between_stored_spans_belong_to_no_sentence():
    assert token_sentences([(0, 3), (4, 6), (8, 9)], [(0, 3), (8, 9)]) == [0, -1, 1]


def test_windows_end_at_sentence_boundaries_and_cover_every_token_once():
    owners = [0] * 4 + [1] * 4 + [2] * 4
    windows = window_ranges(owners, capacity=10)
    assert windows == [(0, 8), (8, 12)]


def test_a_sentence_longer_than_the_window_is_split_across_windows():
    windows = window_ranges([0] * 25, capacity=10)
    assert windows == [(0, 10), (10, 20), (20, 25)]


def test_an_empty_passage_has_no_windows_and_a_query_that_fills_the_window_is_an_error():
    assert window_ranges([], capacity=10) == []
    with pytest.raises(ValueError):
        window_ranges([0, 0], capacity=0)


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


def test_the_recall_quantile_is_the_highest_cutoff_keeping_the_requested_share():
    values = [0.1 * i for i in range(1, 101)]
    for recall in (0.5, 0.9, 0.97):
        cutoff = recall_quantile(values, recall)
        assert sum(v >= cutoff for v in values) >= recall * len(values)
        assert sum(v >= cutoff + 1e-9 for v in values) < recall * len(values)
    with pytest.raises(ValueError):
        recall_quantile([], 0.97)
