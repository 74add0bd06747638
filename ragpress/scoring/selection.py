"""What a scoring call hands on: which documents, in which order, and which of their sentences.

The reranker and the pruner both end by ordering scored documents and cutting them at ``top_k`` and a score
floor; the pruner then keeps the sentences whose score clears a cut-off. The checks of those parameters live
here too, so both components refuse the same values with the same words.
"""

from __future__ import annotations

from haystack import Document

from ragpress.scoring.rank_fusion import reciprocal_rank_fusion

# How documents are ordered, and so which top_k are kept: by their score (relevance), in the order they came in
# (retrieval's), or by reciprocal-rank fusion of the two.
RANKINGS = ("relevance", "input", "fused")


def check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name} must be within [{low}, {high}], got {value}")


def check_top_k(top_k: int | None) -> None:
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")


def check_ranking(ranking: str) -> None:
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")


def select(documents: list[Document], top_k: int | None, score_threshold: float | None,
           ranking: str = "relevance") -> list[Document]:
    """Order as ``ranking`` says (sorts are stable, so ties keep the input order), then apply the score floor
    and top_k."""
    by_score = sorted(range(len(documents)), key=lambda i: -(documents[i].score or 0.0))
    if ranking == "relevance":
        order = by_score
    elif ranking == "input":
        order = list(range(len(documents)))
    else:
        order = reciprocal_rank_fusion([range(len(documents)), by_score])
    ranked = [documents[i] for i in order]
    if score_threshold is not None:
        ranked = [d for d in ranked if (d.score or 0.0) >= score_threshold]
    return ranked[:top_k] if top_k is not None else ranked


def kept_sentences(sentence_scores: list[float], threshold: float) -> list[int]:
    return [i for i, score in enumerate(sentence_scores) if score >= threshold]


def relative_cutoff(sentence_scores: list[list[float]], ratio: float) -> float:
    """The absolute threshold that keeps every sentence scoring at least ``ratio`` times the best sentence of
    all the query's passages.

    Keep probabilities vary more between queries than between the sentences of one passage (a SciFact claim's
    evidence scores ~0.02, an XQuAD answer sentence ~0.3), so a cut-off relative to the query's best sentence
    transfers across queries where one absolute threshold does not. Scaling all scores leaves the kept set
    unchanged, and the best sentence is always kept (when ``ratio`` <= 1)."""
    return ratio * max((s for scores in sentence_scores for s in scores), default=0.0)
