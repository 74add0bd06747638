"""The answerable / unanswerable contexts every abstention benchmark and the gate's fits are built from."""

import pytest

from ragpress.bench.answer_quality import labelled_contexts, question_contexts
from ragpress.training.data import Dataset, Passage, Query

pytestmark = pytest.mark.integration

TOPICS = ["Paris is the capital of France.", "The Loire is the longest river in France.",
          "Lyon lies where the Rhone meets the Saone.", "Bordeaux is known for its wine.",
          "Mont Blanc is the highest peak of the Alps.", "Marseille is a port on the Mediterranean."]


def test_each_question_gets_its_top_hits_with_and_without_its_gold_passages():
    passages = {f"p{i}": Passage(f"p{i}", (text,)) for i, text in enumerate(TOPICS)}
    queries = [Query("q1", "toy", "What is the capital of France?", ["p0"]),
               Query("q2", "toy", "Which river is the longest in France?", ["p1", "p2"])]
    found = list(question_contexts(Dataset("toy", passages, queries), queries, pool=3))
    assert [query.qid for query, _ in found] == ["q1", "q2"]
    for query, (answerable, unanswerable) in found:
        assert len(answerable) == len(unanswerable) == 3
        assert answerable[0].content == passages[query.relevant[0]].text  # the gold passage ranks first
        assert not {d.content for d in unanswerable} & {passages[pid].text for pid in query.relevant}


def test_a_dataset_with_its_own_unanswerable_questions_is_labelled_by_them_each_question_once():
    passages = {f"p{i}": Passage(f"p{i}", (text,)) for i, text in enumerate(TOPICS)}
    queries = [Query("q1", "toy", "What is the capital of France?", ["p0"]),
               Query("q2", "toy", "What is the capital of Spain?", [], answerable=False, near=["p0"])]
    found = list(labelled_contexts(Dataset("toy", passages, queries), queries, pool=3))
    assert [(query.qid, answerable) for query, answerable, _ in found] == [("q1", True), ("q2", False)]
    # The unanswerable question reads the full corpus, its on-topic paragraph included.
    assert found[1][2][0].content == TOPICS[0]


def test_a_dataset_without_them_gets_each_question_also_without_its_gold_passages():
    passages = {f"p{i}": Passage(f"p{i}", (text,)) for i, text in enumerate(TOPICS)}
    queries = [Query("q1", "toy", "What is the capital of France?", ["p0"])]
    found = list(labelled_contexts(Dataset("toy", passages, queries), queries, pool=3))
    assert [answerable for _, answerable, _ in found] == [True, False]
    assert TOPICS[0] not in {d.content for d in found[1][2]}
