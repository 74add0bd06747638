"""The pruner's calibration: the cut-off that keeps a requested share of held-out gold sentences."""

import pytest

from ragpress.training.pruner_calibration import recall_quantile, weighted_recall_quantile

pytestmark = pytest.mark.unit


def test_the_recall_quantile_is_the_highest_cutoff_keeping_the_requested_share():
    values = [0.1 * i for i in range(1, 101)]
    for recall in (0.5, 0.9, 0.97):
        cutoff = recall_quantile(values, recall)
        assert sum(v >= cutoff for v in values) >= recall * len(values)
        assert sum(v >= cutoff + 1e-9 for v in values) < recall * len(values)
    with pytest.raises(ValueError):
        recall_quantile([], 0.97)


@pytest.mark.unit
def test_with_equal_weights_the_weighted_quantile_is_the_plain_one():
    values = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.05, 0.6]
    for recall in (0.5, 0.75, 0.9, 1.0):
        assert weighted_recall_quantile([(v, 1.0) for v in values], recall) == recall_quantile(values, recall)


@pytest.mark.unit
def test_a_small_dataset_weighing_as_much_as_a_large_one_pulls_the_cutoff_down_to_keep_it():
    large = [(0.5 + i / 1000, 1 / 100) for i in range(100)]  # every gold sentence scores high
    small = [(0.9, 1 / 4), (0.8, 1 / 4), (0.7, 1 / 4), (0.01, 1 / 4)]
    pooled = recall_quantile([v for v, _ in large + small], 0.97)
    balanced = weighted_recall_quantile(large + small, 0.9)
    # Pooled, the small set's low sentence is one in 104 and is dropped; balanced, it is a quarter of a set.
    assert pooled > 0.01
    assert balanced == 0.01
    with pytest.raises(ValueError):
        weighted_recall_quantile([], 0.97)
