"""The benchmarks' 95% intervals: Wilson for shares of yes/no outcomes, a query bootstrap for ratios of sums."""

import pytest

from ragpress.evaluation.intervals import bootstrap_ratio, share_with_interval, wilson

pytestmark = pytest.mark.unit


def test_the_wilson_interval_matches_the_textbook_value_and_stays_inside_zero_and_one():
    low, high = wilson(60, 100)
    assert (round(low, 3), round(high, 3)) == (0.502, 0.691)
    assert wilson(0, 20)[0] == 0.0 and 0.0 < wilson(0, 20)[1] < 0.2
    assert wilson(20, 20)[1] == 1.0 and 0.8 < wilson(20, 20)[0] < 1.0


def test_an_empty_set_says_nothing_is_known():
    assert wilson(0, 0) == (0.0, 1.0)
    assert bootstrap_ratio([]) == (0.0, 1.0)


def test_the_bootstrap_interval_holds_the_pooled_ratio_and_narrows_with_more_queries():
    parts = [(1, 2), (3, 4), (0, 3), (2, 2)] * 5
    pooled = sum(n for n, _ in parts) / sum(d for _, d in parts)
    low, high = bootstrap_ratio(parts)
    assert low < pooled < high
    wide_low, wide_high = bootstrap_ratio(parts[:4])
    assert wide_high - wide_low > high - low
    # Identical queries leave nothing to vary.
    assert bootstrap_ratio([(1, 4)] * 10) == (0.25, 0.25)


def test_a_table_cell_gives_the_share_and_its_interval_in_percent():
    assert share_with_interval(60, 100) == "60% [50-69]"
