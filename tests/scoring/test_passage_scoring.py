"""How token keep probabilities become sentence scores, and how long passages are cut into windows."""

import pytest

from ragpress.scoring.passage_scoring import aggregate_sentences, token_sentences, window_ranges

pytestmark = pytest.mark.unit


def test_a_sentence_scores_the_mean_of_its_token_probabilities():
    probs = [0.9, 0.7, 0.1, 0.2, 0.3]
    owners = [0, 0, 1, 1, 1]
    assert aggregate_sentences(probs, owners, 2) == pytest.approx([0.8, 0.2])


def test_tokens_outside_every_sentence_do_not_count():
    assert aggregate_sentences([1.0, 0.0, 0.5], [-1, 0, 0], 1) == pytest.approx([0.25])


def test_a_sentence_without_tokens_scores_zero():
    assert aggregate_sentences([0.9], [1], 3) == [0.0, 0.9, 0.0]


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
