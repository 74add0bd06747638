"""The pruner's calibration: the cut-off that keeps a requested share of held-out gold sentences."""

import pytest

from ragpress.training.pruner_calibration import recall_quantile

pytestmark = pytest.mark.unit


def test_the_recall_quantile_is_the_highest_cutoff_keeping_the_requested_share():
    values = [0.1 * i for i in range(1, 101)]
    for recall in (0.5, 0.9, 0.97):
        cutoff = recall_quantile(values, recall)
        assert sum(v >= cutoff for v in values) >= recall * len(values)
        assert sum(v >= cutoff + 1e-9 for v in values) < recall * len(values)
    with pytest.raises(ValueError):
        recall_quantile([], 0.97)
