"""Eval sets read from the formats users have: SQuAD (answerable and not), HotpotQA (both layouts) and BEIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragpress.evaluation.eval_sets import EvalSetInvalid, load

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eval"


def test_a_squad_article_is_one_document_opening_with_its_title():
    found = load(FIXTURES / "squad2_mini.json", "squad")
    assert [d["id"] for d in found.documents] == ["Southern California"]
    assert found.documents[0]["text"].startswith("# Southern California\n\n")
    assert found.documents[0]["meta"] == {"title": "Southern California"}


def test_squad_questions_carry_answers_gold_sentences_and_answerability():
    found = load(FIXTURES / "squad2_mini.json", "squad")
    answerable = [q for q in found.questions if q.answerable]
    unanswerable = [q for q in found.questions if not q.answerable]
    assert len(answerable) == 6 and len(unanswerable) == 3
    for question in answerable:
        assert question.relevant == {"Southern California"}
        assert question.gold_sentences, question
        assert any(a in " ".join(question.gold_sentences) for a in question.answers)
    assert all(not q.answers and not q.relevant and not q.gold_sentences for q in unanswerable)


@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_hotpot_paragraphs_are_documents_and_supporting_facts_gold_sentences(tmp_path: Path, layout: str):
    records = json.loads((FIXTURES / "hotpot_mini.json").read_text())
    if layout == "rows":
        records = [{**r, "context": [[t, s] for t, s in zip(r["context"]["title"], r["context"]["sentences"],
                                                           strict=True)],
                    "supporting_facts": [list(f) for f in zip(r["supporting_facts"]["title"],
                                                              r["supporting_facts"]["sent_id"], strict=True)]}
                   for r in records]
    file = tmp_path / "hotpot.json"
    file.write_text(json.dumps(records))
    found = load(file, "hotpot")
    first = found.questions[0]
    assert first.relevant == {"Scott Derrickson", "Ed Wood"}
    assert any("American director" in s for s in first.gold_sentences)
    assert "Ed Wood" in {d["id"] for d in found.documents}
    assert len({d["id"] for d in found.documents}) == len(found.documents)


def test_a_beir_folder_gives_judged_queries_only_with_scifact_evidence_as_gold():
    found = load(FIXTURES / "scifact_mini", "beir")
    assert len(found.documents) == 7
    assert [q.qid for q in found.questions] == ["2", "9", "12"]
    assert all(q.relevant and q.gold_sentences and not q.answers for q in found.questions)


def test_the_same_limit_draws_the_same_questions():
    found = load(FIXTURES / "squad2_mini.json", "squad")
    assert found.sample(4) == found.sample(4)
    assert len(found.sample(4)) == 4 and found.sample(None) == found.questions


@pytest.mark.parametrize(("name", "fmt", "said"), [
    ("missing.json", "squad", "does not exist"),
    ("hotpot_mini.json", "squad", "is not squad data"),
    ("squad2_mini.json", "hotpot", "is not hotpot data"),
    ("squad2_mini.json", "beir", "is not a folder"),
    ("squad2_mini.json", "csv", "unknown format"),
])
def test_data_that_is_not_the_format_named_is_refused_with_what_to_do(name: str, fmt: str, said: str):
    with pytest.raises(EvalSetInvalid, match=said):
        load(FIXTURES / name, fmt)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(EvalSetInvalid, match="not UTF-8 JSON"):
        load(bad, "squad")
