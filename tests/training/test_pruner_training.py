"""Training helpers: the default threshold is calibrated on held-out queries, the fusion scalars learn faster, and
the ranking loss orders the sentences of one passage."""

import json
import random
from pathlib import Path

import pytest
import torch

from ragpress.scoring.passage_scoring import score_passages
from ragpress.scoring.provence_model import ProvenceConfig, new_trainable
from ragpress.training.data import Dataset, Passage, Query
from ragpress.training.pruner_training import (
    IGNORE,
    SCALAR_LR_FACTOR,
    Item,
    calibrate_threshold,
    mine_items,
    param_groups,
    sentence_rank_loss,
    to_windows,
)

EXAMPLES = json.loads((Path(__file__).parents[1] / "pruners" / "fixtures" / "dev_examples.json").read_text())


@pytest.fixture(scope="module")
def fresh():
    model, tokenizer = new_trainable(ProvenceConfig(interaction=True))
    model.eval()
    return model, tokenizer


@pytest.mark.integration
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


@pytest.mark.integration
def test_fusion_scalars_get_the_larger_learning_rate_and_every_trainable_weight_is_optimised(fresh):
    model, _ = fresh
    rest, scalars = param_groups(model, 1e-3)
    assert scalars["lr"] == SCALAR_LR_FACTOR * 1e-3
    assert len(scalars["params"]) == len(list(model.fusion.parameters()))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(rest["params"]) + len(scalars["params"]) == len(trainable)


def _window(keep: list[float], sentences: list[int], labels: list[float]):
    return torch.tensor([keep]), torch.tensor([sentences]), torch.tensor([labels])


@pytest.mark.unit
def test_the_rank_loss_is_small_when_gold_sentences_outscore_their_neighbours_and_large_otherwise():
    # Two sentences of two tokens each, then the closing [SEP] (unlabelled, outside every sentence).
    sentences, labels = [0, 0, 1, 1, -1], [1.0, 1.0, 0.0, 0.0, IGNORE]
    right = sentence_rank_loss(*_window([4.0, 2.0, -3.0, -1.0, 9.0], sentences, labels))
    wrong = sentence_rank_loss(*_window([-3.0, -1.0, 4.0, 2.0, 9.0], sentences, labels))
    assert right < 0.01 < 4.0 < wrong
    # Only the sentence means count: moving logit mass between tokens of one sentence changes nothing.
    same = sentence_rank_loss(*_window([6.0, 0.0, -3.0, -1.0, 9.0], sentences, labels))
    assert torch.isclose(right, same)


@pytest.mark.unit
def test_the_rank_loss_ignores_windows_without_both_gold_and_other_sentences():
    all_drop = _window([1.0, 2.0, 3.0], [0, 1, -1], [0.0, 0.0, IGNORE])
    unlabelled = _window([1.0, 2.0, 3.0], [0, 1, -1], [IGNORE, IGNORE, IGNORE])
    assert sentence_rank_loss(*all_drop) == 0.0
    assert sentence_rank_loss(*unlabelled) == 0.0


@pytest.mark.unit
def test_the_rank_loss_pushes_gold_sentence_logits_up_and_the_others_down():
    keep = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    sentence_rank_loss(keep, torch.tensor([[0, 1, 2]]), torch.tensor([[1.0, 0.0, 0.0]])).backward()
    assert keep.grad[0, 0] < 0 < keep.grad[0, 1]
    assert torch.isclose(keep.grad[0, 1], keep.grad[0, 2])


TOPICS = ["Paris is the capital of France. It lies on the Seine.", "The Loire is the longest river in France.",
          "Lyon lies where the Rhone meets the Saone.", "Bordeaux is known for its wine.",
          "Mont Blanc is the highest peak of the Alps.", "Marseille is a port on the Mediterranean."]


@pytest.mark.integration
def test_an_unanswerable_question_trains_its_on_topic_paragraph_as_a_negative_that_answers_nothing(fresh):
    _, tokenizer = fresh
    passages = {f"p{i}": Passage(f"p{i}", tuple(text.split(". "))) for i, text in enumerate(TOPICS)}
    queries = [Query("q1", "toy", "What is the population of Paris?", [], answerable=False, near=["p0"])]
    items = mine_items(Dataset("toy", passages, queries), queries, negatives=2, rng=random.Random(0))
    assert [item.passage.pid for item in items].count("p0") == 1  # not drawn again as a mined negative
    own = next(item for item in items if item.passage.pid == "p0")
    assert (own.relevant, own.gold) == (False, [])
    assert len(items) == 3
    (window,) = to_windows(own, tokenizer, ProvenceConfig(max_length=256))
    assert window.relevance == 0.0
    assert {label for label in window.keep if label != IGNORE} == {0.0}
