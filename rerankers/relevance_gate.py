"""Abstain instead of guessing: pass passages on only when at least one is relevant enough.

After reranking, a passage's score is a relevance probability. When none clears ``min_score`` the gate
passes no passages, the generator answers that the documents do not hold the answer without being
called, and ``abstain_reason`` says why (the "sufficient context" idea: a model handed irrelevant
context guesses). With ``sufficiency`` it also asks a small learned model whether the evidence answers,
from several signals at once (``ragpress.rerankers.sufficiency``), and abstains when it judges it does not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base.devices import check_device
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.base.schema import KEPT_SENTENCES, SENTENCE_SCORES
from ragpress.rerankers.sufficiency import PRUNER_FEATURES, SufficiencyWeights, evidence_features

NO_RELEVANT_PASSAGE = "no_relevant_passage"
NO_RELEVANT_SENTENCE = "no_relevant_sentence"
NO_SENTENCE_KEPT = "no_sentence_kept"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"


@component
class RelevanceGate:
    """Forwards ``documents`` if any has ``score >= min_score``, else none, with the reason.

    With ``min_sentence_score`` it also abstains when no sentence of any document has a pruner keep score
    (``meta["sentence_scores"]``) at least that high: a passage can look on-topic while no sentence in it
    answers. Documents without sentence scores do not count as evidence for that check. After a pruner that kept
    no sentence of any document it abstains too (``no_sentence_kept``): there is nothing left to answer from.

    With ``sufficiency`` (``"ragpress-sufficiency-minilm"``, the shipped weights, or a weights file from
    ``python -m ragpress.training.fit_sufficiency``) it needs the ``query`` too and abstains when the model's
    probability that the documents answer it is below ``min_sufficiency`` (default: the file's threshold).

    Usage:
        >>> gate = RelevanceGate(min_score=0.3)
        >>> gate.run(documents=[Document(content="x", score=0.1)])
        {'documents': [], 'abstain_reason': 'no_relevant_passage'}
        >>> gate = RelevanceGate(sufficiency="ragpress-sufficiency-minilm")
        >>> gate.run(documents=pruned, query="Who won the 2000 championship?")["abstain_reason"]
        'insufficient_evidence'
    """

    role: ClassVar[Role] = Role.GATE

    # The shipped pruner's floor, as pipelines/pruned.yaml ranks (the first 5 hits): the highest that wrongly
    # abstains on at most 5% of held-out answerable train questions (python -m ragpress.bench.gate_threshold;
    # docs/benchmarks.md). Another reranker needs its own.
    def __init__(
        self,
        min_score: float = 0.12,
        drop_below: float | None = None,
        min_sentence_score: float | None = None,
        sufficiency: str | None = None,
        min_sufficiency: float | None = None,
        device: str = "auto",
    ) -> None:
        for name, value in (
            ("min_score", min_score), ("drop_below", drop_below), ("min_sentence_score", min_sentence_score),
            ("min_sufficiency", min_sufficiency),
        ):
            _check_unit(name, value)
        if min_sufficiency is not None and sufficiency is None:
            raise ValueError("min_sufficiency needs sufficiency (a weights name or file)")
        weights = None if sufficiency is None else SufficiencyWeights.load(sufficiency)
        if weights is not None and weights.needs_answer:
            raise ValueError(f"{sufficiency} reads the generator's answer; a gate before generation cannot use it")
        self.min_score = min_score
        self.drop_below = drop_below
        self.min_sentence_score = min_sentence_score
        self.sufficiency = sufficiency
        self.min_sufficiency = min_sufficiency
        self.device = check_device(device)
        self._weights = weights

    def warm_up(self) -> None:
        if self._weights is not None:
            sentence_transformer(self._weights.embedder, self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, min_score=self.min_score, drop_below=self.drop_below, min_sentence_score=self.min_sentence_score,
            sufficiency=self.sufficiency, min_sufficiency=self.min_sufficiency, device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelevanceGate:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], abstain_reason=str)
    def run(
        self,
        *,
        documents: list[Document],
        query: str | None = None,
        min_score: float | None = None,
        min_sentence_score: float | None = None,
        min_sufficiency: float | None = None,
    ) -> dict[str, Any]:
        """Gate ``documents``; floors given here override the init values.

        :param documents: the ranked (and pruned) passages, with their relevance scores.
        :param query: the question; needed with ``sufficiency``.
        :param min_score: overrides the init value for this run.
        :param min_sentence_score: overrides the init value for this run.
        :param min_sufficiency: overrides the init value (or the weights' threshold) for this run.
        :returns: ``documents`` to answer from (empty when abstaining) and ``abstain_reason`` ("" when not).
        """
        _check_unit("min_sufficiency", min_sufficiency)
        threshold = self.min_score if min_score is None else min_score
        sentence_floor = self.min_sentence_score if min_sentence_score is None else min_sentence_score
        best = max((d.score or 0.0) for d in documents) if documents else None
        reason = abstain_reason(best, best_sentence_score(documents), threshold, sentence_floor,
                                *self._sufficiency(documents, query, min_sufficiency)) or _nothing_kept(documents)
        if reason:
            return {"documents": [], "abstain_reason": reason}
        kept = documents if self.drop_below is None else [d for d in documents if (d.score or 0) >= self.drop_below]
        return {"documents": kept, "abstain_reason": ""}

    def _sufficiency(
        self, documents: list[Document], query: str | None, floor: float | None
    ) -> tuple[float | None, float | None]:
        """(the model's probability that ``documents`` answer ``query``, the floor it must reach), or
        (None, None) without a sufficiency model."""
        if self._weights is None:
            return None, None
        if query is None:
            raise ValueError("a gate with sufficiency needs the query")
        needs = set(self._weights.weights) & set(PRUNER_FEATURES)
        if needs and documents and not any(SENTENCE_SCORES in (d.meta or {}) for d in documents):
            # Without them every such feature reads 0 and the model would refuse every question, silently.
            raise ValueError(
                f"the sufficiency model {self.sufficiency!r} reads the pruner's sentence scores "
                f"({', '.join(sorted(needs))}), which these documents lack: place the gate after a ProvencePruner, "
                "or fit a model without them (python -m ragpress.training.fit_sufficiency)"
            )
        embedder = sentence_transformer(self._weights.embedder, self.device)
        features = evidence_features(embedder, query, documents, self._weights.weights)
        cut = next(c for c in (floor, self.min_sufficiency, self._weights.threshold) if c is not None)
        return self._weights.probability(features), cut


def _check_unit(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value}")


def abstain_reason(
    best_score: float | None, best_sentence: float, min_score: float, min_sentence_score: float | None,
    sufficiency: float | None = None, min_sufficiency: float | None = None,
) -> str:
    """The gate's decision from the evidence's best passage score (None: no passages), best sentence keep
    score and sufficiency probability: why it abstains, or "" when the evidence passes. The cheaper checks
    come first, so their reason wins. The benchmarks replay it on recorded scores."""
    if best_score is None or best_score < min_score:
        return NO_RELEVANT_PASSAGE
    if min_sentence_score is not None and best_sentence < min_sentence_score:
        return NO_RELEVANT_SENTENCE
    if sufficiency is not None and min_sufficiency is not None and sufficiency < min_sufficiency:
        return INSUFFICIENT_EVIDENCE
    return ""


def _nothing_kept(documents: list[Document]) -> str:
    pruned = [d.meta[KEPT_SENTENCES] for d in documents if KEPT_SENTENCES in (d.meta or {})]
    return NO_SENTENCE_KEPT if pruned and not any(pruned) else ""


def best_sentence_score(documents: list[Document]) -> float:
    """The highest pruner keep score of any sentence of ``documents`` (0.0 when none has scores)."""
    return max((float(x) for d in documents for x in (d.meta or {}).get(SENTENCE_SCORES) or []), default=0.0)
