"""The sufficiency model's fit: out-of-fold probabilities, the service threshold and the feature set it keeps."""

from __future__ import annotations

import pytest

from ragpress.training.fit_sufficiency import Example, choose, fit, fold, out_of_fold, refusal_rates, threshold_for


def _examples(relevance: float = 0.5) -> list[Example]:
    """Forty questions, each answerable (cosine high) and unanswerable (cosine low), overlapping a little."""
    examples = []
    for i in range(40):
        for answerable in (True, False):
            cosine = 0.4 + 0.01 * (i % 20) + (0.15 if answerable else 0.0)
            features = {"cosine": cosine, "relevance": relevance}
            examples.append(Example(f"q{i}", "toy", answerable, features))
    return examples


@pytest.mark.unit
def test_a_fit_ranks_answerable_evidence_higher_and_the_threshold_refuses_few_answerable() -> None:
    examples = _examples()
    model = fit(examples, ("cosine",), 1e-2)
    assert model.weights["cosine"] > 0
    probabilities = out_of_fold(examples, ("cosine",), 1e-2, min_score=0.16)
    cut = threshold_for(probabilities, examples, 0.05)
    missing, answerable = refusal_rates(probabilities, examples, cut)
    assert answerable <= 0.05 and missing > 0.5


@pytest.mark.unit
def test_what_the_relevance_floor_refuses_counts_against_the_tolerated_refusals() -> None:
    examples = _examples(relevance=0.1)  # every question already refused by a 0.16 floor
    probabilities = out_of_fold(examples, ("cosine",), 1e-2, min_score=0.16)
    assert threshold_for(probabilities, examples, 0.05) == 0.0
    assert refusal_rates(probabilities, examples, 0.0) == (1.0, 1.0)


@pytest.mark.unit
def test_a_fit_without_generated_answers_compares_only_the_feature_sets_it_recorded() -> None:
    # --evidence-only records no answer-side signals; sets needing them (or any missing signal) are skipped.
    assert set(choose(_examples(), 0.05, min_score=0.16)) <= {"cosine", "relevance"}


@pytest.mark.unit
def test_a_question_and_its_gold_removed_twin_share_a_fold() -> None:
    twins = [e for e in _examples() if e.qid == "q3"]
    assert len({fold(e) for e in twins}) == 1
