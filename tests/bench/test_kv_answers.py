"""The generated-answer benchmark of the KV path: variants named on the command line, each paired with the baseline."""

import pytest

from ragpress.bench.kv_answers import parse_variant, summary
from ragpress.evaluation.answers import answer_recall, exact_match, f1

pytestmark = pytest.mark.unit


def test_a_variant_names_the_kv_generators_init_parameters_with_their_types():
    assert parse_variant("sequential") == ("sequential", {})
    assert parse_variant("kv") == ("kv", {})
    assert parse_variant("kv:quantization=int4,temperature=0.8,scale=1") == (
        "kv", {"quantization": "int4", "temperature": 0.8, "scale": 1.0})


@pytest.mark.parametrize("spec", ["kv:bogus=1", "sequential:scale=1", "remote"])
def test_an_unknown_variant_or_option_stops_the_run_with_what_to_use(spec):
    with pytest.raises(SystemExit, match="kv"):
        parse_variant(spec)


def test_a_sentence_answer_keeps_its_recall_where_its_f1_drops():
    answer = "The tower was finished in 1889 for the World's Fair."
    assert answer_recall(answer, ["1889"]) == 1.0
    assert f1(answer, ["1889"]) < 0.25
    assert exact_match("in 1889", ["1889"]) is False and exact_match("The 1889.", ["1889"]) is True
    assert answer_recall("no idea", ["", "1889"]) == 0.0


def record(qid: str, variant: str, f1_: float, recall: float, ttft_ms: float) -> dict:
    return {"dataset": "toy", "qid": qid, "variant": variant, "f1": f1_, "recall": recall, "em": 0.0,
            "abstained": False, "ttft_ms": ttft_ms}


def test_each_variant_is_scored_against_the_baseline_on_the_questions_both_answered():
    records = [record("q1", "sequential", 0.5, 1.0, 2000), record("q2", "sequential", 0.25, 0.5, 1000),
               record("q1", "kv", 0.25, 1.0, 100), record("q2", "kv", 0.5, 0.5, 200),
               record("q3", "kv", 1.0, 1.0, 100)]  # no baseline answer for q3: left out of the pairs
    table = summary(records)
    row = next(line for line in table.splitlines() if line.startswith("| kv |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2"  # questions
    assert cells[2] == "37.5" and cells[3].startswith("100%")  # same F1 sum as the baseline
    assert cells[4] == "75.0" and cells[5].startswith("100%")
    assert cells[-1] == "12.5x"  # median of 20x and 5x
