"""Which sentences the query needs: the pruner's keep scores fused with lexical evidence.

The keep probability alone varies more between queries than between the sentences of one passage, and it
often ranks the sentence that holds the query's rare terms below its neighbours. A logistic model over a few
query-relative signals turns them into one calibrated probability per sentence. Every signal is compared with
the best of the same call, so a cut-off on the result transfers across queries:

- ``keep``: the sentence's keep logit minus the call's best sentence keep logit;
- ``passage_keep``: the best keep logit inside the sentence's passage minus the call's best;
- ``relevance``: the passage's relevance logit minus the call's best passage relevance logit;
- ``sentence_lexical``: the query's BM25 match with the sentence, IDF taken over the call's sentences
  (``ragpress.scoring.lexical``), as a share of the best sentence's;
- ``passage_lexical``: the same over the call's passages.

Weights and the default threshold are fitted on held-out train queries (``ragpress.training.fit_sentence_fusion``)
and live in the pruner weights' config.json under ``sentence_fusion``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ragpress.scoring import lexical
from ragpress.scoring.logistic_fusion import check_logistic, combine, logit
from ragpress.scoring.passage_scoring import PassageScores
from ragpress.scoring.sentences import Span

FEATURES = ("keep", "passage_keep", "relevance", "sentence_lexical", "passage_lexical")


@dataclass(frozen=True)
class SentenceFusion:
    """``sigmoid(bias + sum(weights[f] * feature f))`` per sentence; ``threshold`` is the default cut-off."""

    weights: dict[str, float]
    bias: float
    threshold: float
    fitted_on: str = ""

    def __post_init__(self) -> None:
        check_logistic("sentence fusion", self.weights, FEATURES, self.threshold)

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, record: dict[str, Any] | None) -> SentenceFusion | None:
        return None if record is None else cls(**record)


def sentence_features(
    query: str, passages: list[tuple[str, list[Span]]], scores: list[PassageScores]
) -> dict[str, list[float]]:
    """Every feature of every sentence of the call, passages in order, sentences in order within each."""
    sentences = [text[s:e] for text, spans in passages for s, e in spans]
    keep = [[logit(s) for s in r.sentence_scores] for r in scores]
    best_keep = max((k for ks in keep for k in ks), default=0.0)
    relevance = [logit(r.score) for r in scores]
    best_relevance = max(relevance, default=0.0)
    passage_lexical = _share_of_best(lexical.bm25_coverage(query, [text for text, _ in passages]))
    per_passage = [
        (k - best_keep, max(ks) - best_keep, rel - best_relevance, lex)
        for ks, rel, lex in zip(keep, relevance, passage_lexical, strict=True)
        for k in ks
    ]
    columns = list(zip(*per_passage, strict=True)) if per_passage else [(), (), (), ()]
    return {
        "keep": list(columns[0]),
        "passage_keep": list(columns[1]),
        "relevance": list(columns[2]),
        "sentence_lexical": _share_of_best(lexical.bm25_coverage(query, sentences)),
        "passage_lexical": list(columns[3]),
    }


def _share_of_best(values: list[float]) -> list[float]:
    best = max(values, default=0.0)
    return [v / best if best > 0 else 0.0 for v in values]


def fused_scores(
    model: SentenceFusion, query: str, passages: list[tuple[str, list[Span]]], scores: list[PassageScores]
) -> list[list[float]]:
    """The fused keep probability of each sentence, per passage."""
    features = sentence_features(query, passages, scores)
    flat = combine(model, {name: features[name] for name in model.weights})
    result, start = [], 0
    for r in scores:
        result.append(flat[start : start + len(r.sentence_scores)])
        start += len(r.sentence_scores)
    return result
