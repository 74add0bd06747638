"""A response measured against its question's labels, and many summarised, as `ragpress eval` reports them."""

from __future__ import annotations

from typing import Any

import pytest

from ragpress.evaluation.eval_sets import EvalQuestion
from ragpress.evaluation.measures import measure, paired_f1_difference, summarize

pytestmark = pytest.mark.unit

QUESTION = EvalQuestion("q1", "When did it open?", ("14 December 2004",), True, frozenset({"viaduct"}),
                        ("The bridge was formally opened on 14 December 2004.",))


def response(answer: str = "It opened on 14 December 2004.", abstained: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "answer": answer, "abstained": abstained,
        "documents": [
            {"doc_id": "other", "text": "Unrelated text."},
            {"doc_id": "viaduct", "text": "Construction began in 2001. The bridge was formally opened on "
                                          "14 December 2004.",
             "pruned_text": "The bridge was formally opened on 14 December 2004."},
        ],
        "usage": {"context_tokens": 40, "context_tokens_after_pruning": 12},
        "timings_ms": {"retrieve": 20.0, "prune": 100.0, "ttft": 300.0, "total": 900.0},
        **extra,
    }


def test_a_response_is_measured_on_ranking_answer_pruning_and_time():
    record = measure(QUESTION, response())
    assert record["ranked"] == ["other", "viaduct"]
    assert record["ndcg10"] == pytest.approx(1 / 1.58496, rel=1e-4)
    assert record["recall100"] == 1.0
    assert record["f1"] == pytest.approx(2 / 3) and record["em"] == 0.0  # 3 of 6 words, all 3 of the reference
    assert (record["context_tokens"], record["kept_tokens"]) == (40, 12)
    assert (record["gold_present"], record["gold_kept"]) == (1, 1)
    assert record["timings_ms"]["ttft"] == 300.0


def test_a_gold_sentence_the_pruner_dropped_counts_as_lost_and_one_never_retrieved_not_at_all():
    pruned_away = response()
    pruned_away["documents"][1]["pruned_text"] = "Construction began in 2001."
    assert (measure(QUESTION, pruned_away)["gold_present"], measure(QUESTION, pruned_away)["gold_kept"]) == (1, 0)
    missed = response()
    missed["documents"] = missed["documents"][:1]
    assert measure(QUESTION, missed)["gold_present"] == 0


def test_unanswerable_questions_have_no_f1_and_count_towards_abstention_on_them():
    unanswerable = EvalQuestion("q2", "Who painted it?", answerable=False)
    records = [measure(unanswerable, response("The documents do not say.", abstained=True)),
               measure(unanswerable, response("Picasso.")),
               measure(QUESTION, response())]
    assert "f1" not in records[0] and "ttft" not in records[0]["timings_ms"]  # a refusal writes no token
    summary = summarize(records)
    assert summary["abstain_unanswerable"] == 0.5 and summary["abstain_answerable"] == 0.0
    low, high = summary["abstain_unanswerable_ci"]
    assert low < 0.5 < high


def test_the_summary_gives_shares_of_sums_medians_and_the_kv_cache():
    kv = {"kv_cache": {"hits": 3, "misses": 1, "stored_bytes": 9000, "tokens": 3}}
    records = [measure(QUESTION, response(**kv)), measure(QUESTION, response(answer="No idea."))]
    summary = summarize(records)
    assert summary["removed"] == pytest.approx(28 / 40)
    assert summary["gold_kept"] == 1.0
    assert summary["f1"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert summary["ttft_ms"] == 300.0
    assert summary["kv_hit_ratio"] == 0.75 and summary["kv_bytes_per_token"] == 3000
    assert summary["questions"] == 2


def test_a_retrieval_only_response_has_no_answer_measures():
    record = measure(QUESTION, {k: v for k, v in response().items() if k not in ("answer", "abstained")})
    assert "f1" not in record and "abstained" not in record
    assert "abstain_answerable" not in summarize([record])


def test_the_paired_f1_difference_compares_the_same_questions_only():
    other = EvalQuestion("q9", "Other?", ("yes",))
    baseline = [measure(QUESTION, response("No idea.")), measure(other, response("yes"))]
    better = [measure(QUESTION, response()), measure(EvalQuestion("q10", "New?", ("no",)), response("no"))]
    found = paired_f1_difference(baseline, better)
    assert found["f1_vs_first"] == pytest.approx(2 / 3)  # q1 only: 0 -> 2/3; q9 and q10 have no pair
    assert paired_f1_difference(baseline, []) == {}


def test_cached_tokens_masked_are_those_laid_out_but_not_kept():
    kv = {"kv_cache": {"hits": 2, "misses": 0, "stored_bytes": 400, "tokens": 40}}
    assert summarize([measure(QUESTION, response(**kv))])["kv_masked"] == pytest.approx(1 - 12 / 40)
