"""95% intervals for the benchmarks' shares: a Wilson interval for a share of independent yes/no outcomes, and
a bootstrap over queries for a ratio of sums (tokens removed, gold sentences kept) whose parts are not
independent within one query."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Z95 = 1.959964


def wilson(successes: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of ``successes / total`` ((0, 1) when there is nothing to count)."""
    if total == 0:
        return 0.0, 1.0
    share = successes / total
    centre = share + Z95**2 / (2 * total)
    spread = Z95 * math.sqrt(share * (1 - share) / total + Z95**2 / (4 * total**2))
    scale = 1 + Z95**2 / total
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def bootstrap_ratio(parts: Sequence[tuple[float, float]], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of ``sum(numerators) / sum(denominators)`` over ``parts`` (one
    (numerator, denominator) per query), resampling whole queries."""
    if not parts:
        return 0.0, 1.0
    rng = random.Random(seed)
    ratios = []
    for _ in range(rounds):
        drawn = [parts[rng.randrange(len(parts))] for _ in parts]
        denominator = sum(d for _, d in drawn)
        ratios.append(sum(n for n, _ in drawn) / denominator if denominator else 0.0)
    ratios.sort()
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def share_with_interval(successes: int, total: int) -> str:
    """"62% [59-65]" for a table cell."""
    low, high = wilson(successes, total)
    return f"{100 * successes / max(1, total):.0f}% [{100 * low:.0f}-{100 * high:.0f}]"
