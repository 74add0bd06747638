"""Training helpers: the default threshold is calibrated on held-out queries, and the fusion scalars learn faster."""

import json
from pathlib import Path

import pytest

from pruners.data import Passage
from pruners.model import ProvenceConfig, new_trainable
from pruners.scoring import score_passages
from pruners.training import SCALAR_LR_FACTOR, Item, calibrate_threshold, param_groups

pytestmark = pytest.mark.integration

EXAMPLES = json.loads((Path(__file__).parent / "fixtures" / "dev_examples.json").read_text())


@pytest.fixture(scope="module")
def fresh():
    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    return model, tokenizer


def test_the_calibrated_threshold_keeps_the_requested_share_of_gold_sentences(fresh):
    model, tokenizer = fresh
    items = [
        Item(e["query"], Passage(str(i), tuple(e["passages"][0])), True, e["gold_sentences"])
        for i, e in enumerate(EXAMPLES)
    ]
    gold_scores = []
    for item in items:
        result = score_passages(model, tokenizer, item.query, [(item.passage.text, item.passage.spans())])[0]
        gold_scores += [result.sentence_scores[i] for i in item.gold]
    for recall in (0.5, 0.9):
        threshold = calibrate_threshold(model, tokenizer, items, recall)
        assert sum(s >= threshold for s in gold_scores) >= recall * len(gold_scores)
        # The highest such threshold: a little higher keeps less than asked.
        assert sum(s >= threshold + 1e-6 for s in gold_scores) < sum(s >= threshold for s in gold_scores)


def test_fusion_scalars_get_the_larger_learning_rate_and_every_trainable_weight_is_optimised(fresh):
    model, _ = fresh
    rest, scalars = param_groups(model, 1e-3)
    assert scalars["lr"] == SCALAR_LR_FACTOR * 1e-3
    assert len(scalars["params"]) == len(list(model.fusion.parameters()))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(rest["params"]) + len(scalars["params"]) == len(trainable)
