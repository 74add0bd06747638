"""The sentence fusion's fit: an informative feature gets the weight, and the threshold keeps the asked recall."""

import math

import pytest
import torch

from ragpress.training.fit_sentence_fusion import Example, fit, threshold_and_removal


def synthetic(dataset: str, informative: list[float], gold: list[bool]) -> Example:
    return Example(dataset, {"keep": informative, "sentence_lexical": [0.5] * len(gold)}, gold, [10] * len(gold))


@pytest.mark.unit
def test_the_fit_weights_an_informative_feature_and_the_threshold_keeps_the_asked_recall():
    torch.manual_seed(0)
    examples = []
    for q in range(40):
        gold = [i == q % 5 for i in range(5)]
        examples.append(synthetic("xquad", [2.0 * g + 0.3 * ((q + i) % 3) for i, g in enumerate(gold)], gold))
    weights, bias = fit(examples, ("keep",), 0.01)
    assert weights["keep"] > 1.0
    scores = [[1 / (1 + math.exp(-(bias + weights["keep"] * x))) for x in e.features["keep"]] for e in examples]
    threshold, removed, kept = threshold_and_removal(examples, scores, 0.97, ("xquad",))
    assert kept >= 0.97
    assert removed == pytest.approx(0.8)  # exactly the four non-gold sentences of every query go
    gold_scores = [s for e, ss in zip(examples, scores, strict=True) for s, g in zip(ss, e.gold, strict=True) if g]
    assert min(gold_scores) >= threshold
    with pytest.raises(ValueError, match="no gold"):
        threshold_and_removal(examples, scores, 0.97, ("scifact",))  # no query of that dataset
