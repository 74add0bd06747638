"""Abstain instead of guessing: pass passages on only when at least one is relevant enough.

After reranking, a passage's score is a relevance probability. When none clears ``min_score`` the gate
passes no passages, the generator answers that the documents do not hold the answer without being
called, and ``abstain_reason`` says why (the "sufficient context" idea: a model handed irrelevant
context guesses).
"""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

NO_RELEVANT_PASSAGE = "no_relevant_passage"
NO_RELEVANT_SENTENCE = "no_relevant_sentence"
SENTENCE_SCORES = "sentence_scores"  # written by pruners.component.ProvencePruner


@component
class RelevanceGate:
    """Forwards ``documents`` if any has ``score >= min_score``, else none, with the reason.

    With ``min_sentence_score`` it also abstains when no sentence of any document has a pruner keep score
    (``meta["sentence_scores"]``) at least that high: a passage can look on-topic while no sentence in it
    answers. Documents without sentence scores do not count as evidence for that check.

    Usage:
        >>> gate = RelevanceGate(min_score=0.3)
        >>> gate.run(documents=[Document(content="x", score=0.1)])
        {'documents': [], 'abstain_reason': 'no_relevant_passage'}
    """

    # The shipped reranker's floor: the highest that wrongly abstains on at most 5% of held-out answerable
    # train questions (python -m bench.gate_threshold; docs/benchmarks.md). Another reranker needs its own.
    def __init__(
        self, min_score: float = 0.16, drop_below: float | None = None, min_sentence_score: float | None = None
    ) -> None:
        for name, value in (
            ("min_score", min_score), ("drop_below", drop_below), ("min_sentence_score", min_sentence_score)
        ):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        self.min_score = min_score
        self.drop_below = drop_below
        self.min_sentence_score = min_sentence_score

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, min_score=self.min_score, drop_below=self.drop_below, min_sentence_score=self.min_sentence_score
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelevanceGate:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], abstain_reason=str)
    def run(
        self, documents: list[Document], min_score: float | None = None, min_sentence_score: float | None = None
    ) -> dict[str, Any]:
        """Gate ``documents``; floors given here override the init values."""
        threshold = self.min_score if min_score is None else min_score
        sentence_floor = self.min_sentence_score if min_sentence_score is None else min_sentence_score
        best = max((d.score or 0.0) for d in documents) if documents else None
        reason = abstain_reason(best, best_sentence_score(documents), threshold, sentence_floor)
        if reason:
            return {"documents": [], "abstain_reason": reason}
        kept = documents if self.drop_below is None else [d for d in documents if (d.score or 0) >= self.drop_below]
        return {"documents": kept, "abstain_reason": ""}


def abstain_reason(
    best_score: float | None, best_sentence: float, min_score: float, min_sentence_score: float | None
) -> str:
    """The gate's decision from the evidence's best passage score (None: no passages) and best sentence keep
    score: why it abstains, or "" when the evidence passes. The benchmarks replay it on recorded scores."""
    if best_score is None or best_score < min_score:
        return NO_RELEVANT_PASSAGE
    if min_sentence_score is not None and best_sentence < min_sentence_score:
        return NO_RELEVANT_SENTENCE
    return ""


def best_sentence_score(documents: list[Document]) -> float:
    """The highest pruner keep score of any sentence of ``documents`` (0.0 when none has scores)."""
    return max((float(x) for d in documents for x in (d.meta or {}).get(SENTENCE_SCORES) or []), default=0.0)
