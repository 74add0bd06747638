"""A fitted logistic fusion: known features only, probabilities from weights and bias, logits that invert them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from ragpress.scoring.logistic_fusion import check_logistic, combine, logit

pytestmark = pytest.mark.unit


@dataclass
class Weights:
    weights: dict[str, float] = field(default_factory=lambda: {"cosine": 2.0, "lexical": -1.0})
    bias: float = 0.5


def test_each_item_gets_the_sigmoid_of_bias_plus_weighted_signals() -> None:
    [first, second] = combine(Weights(), {"cosine": [1.0, 0.0], "lexical": [0.0, 1.0]})
    assert first == pytest.approx(1 / (1 + math.exp(-2.5)))
    assert second == pytest.approx(1 / (1 + math.exp(0.5)))


def test_extreme_logits_saturate_instead_of_overflowing() -> None:
    assert combine(Weights(bias=1e6), {"cosine": [0.0], "lexical": [0.0]}) == [pytest.approx(1.0)]


def test_logit_inverts_the_sigmoid_and_clips_at_the_ends() -> None:
    assert logit(1 / (1 + math.exp(-1.5))) == pytest.approx(1.5)
    assert math.isfinite(logit(1.0)) and math.isfinite(logit(0.0))


@pytest.mark.parametrize(("weights", "threshold"), [({}, None), ({"unknown": 1.0}, None), ({"cosine": 1.0}, 1.5)])
def test_unknown_or_no_features_and_a_threshold_outside_0_1_are_refused(weights: dict, threshold: float | None) -> None:
    with pytest.raises(ValueError):
        check_logistic("fusion", weights, ("cosine", "lexical"), threshold)
