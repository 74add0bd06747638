"""The labelled datasets: SQuAD 2.0 gives answer sentences and unanswerable questions beside their on-topic
paragraph, the split follows Wikipedia articles across XQuAD and SQuAD, and HotpotQA dev is never trained on."""

import json
from pathlib import Path

import pytest

from ragpress.training import data

CONTEXT = "Tesla was born in Smiljan. He moved to New York in 1884. He died in 1943."


def _squad_root(tmp_path: Path, titles: list[str]) -> Path:
    articles = [
        {
            "title": title,
            "paragraphs": [
                {
                    "context": CONTEXT,
                    "qas": [
                        {"id": f"{title}-a", "question": "When did he move to New York?", "is_impossible": False,
                         "answers": [{"text": "1884", "answer_start": CONTEXT.index("1884")}]},
                        {"id": f"{title}-u", "question": "When did he move to Paris?", "is_impossible": True,
                         "answers": []},
                    ],
                }
            ],
        }
        for title in titles
    ]
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "part.json").write_text(json.dumps({"data": articles}))
    return tmp_path


@pytest.mark.unit
def test_an_answerable_squad_question_is_labelled_with_the_sentence_holding_its_answer(tmp_path):
    dataset = data.load("squad", _squad_root(tmp_path, ["Nikola_Tesla"]))
    answerable = next(q for q in dataset.queries if q.answerable)
    assert answerable.relevant == ["Nikola_Tesla#0"]
    assert answerable.gold == {"Nikola_Tesla#0": [1]}
    assert dataset.passages["Nikola_Tesla#0"].sentences[1] == "He moved to New York in 1884."
    assert answerable.answers == ["1884"]


@pytest.mark.unit
def test_an_unanswerable_squad_question_has_no_relevant_passage_and_names_the_paragraph_beside_it(tmp_path):
    dataset = data.load("squad", _squad_root(tmp_path, ["Nikola_Tesla"]))
    unanswerable = next(q for q in dataset.queries if not q.answerable)
    assert (unanswerable.relevant, unanswerable.gold, unanswerable.answers) == ([], {}, [])
    assert unanswerable.near == ["Nikola_Tesla#0"]


@pytest.mark.unit
def test_a_wikipedia_article_falls_on_the_same_side_for_squad_and_xquad(tmp_path):
    titles = [f"Article_{i}" for i in range(60)]
    dataset = data.load("squad", _squad_root(tmp_path, titles))
    dev_titles = {data.group_key(q) for q in data.split(dataset, dev=True)}
    assert dev_titles == {t for t in titles if data.is_dev("xquad", t)}
    # Both questions of an article stay together, and the split is neither empty nor everything.
    assert 0 < len(dev_titles) < len(titles)
    assert all(data.group_key(q) not in dev_titles for q in data.split(dataset, dev=False))


@pytest.mark.unit
def test_hotpotqa_dev_is_only_ever_dev(tmp_path):
    record = {
        "question": "Which city?",
        "answer": "Paris",
        "supporting_facts": {"title": ["A", "B"], "sent_id": [1, 0]},
        "context": {"title": ["A", "B"], "sentences": [["A one.", " A two."], ["B one."]]},
    }
    (tmp_path / "hotpotqa_dev").mkdir()
    (tmp_path / "hotpotqa_dev" / "hotpotqa_dev_distractor_100.json").write_text(json.dumps([record] * 3))
    dataset = data.load("hotpotqa_dev", tmp_path)
    assert data.split(dataset, dev=False) == []
    assert len(data.split(dataset, dev=True)) == 3
    assert dataset.queries[0].gold == {"A": [1], "B": [0]}
    assert dataset.passages["A"].sentences == ("A one.", "A two.")


@pytest.mark.unit
def test_an_unknown_dataset_names_the_ones_there_are():
    with pytest.raises(ValueError, match="hotpotqa_dev"):
        data.load("squad3")
