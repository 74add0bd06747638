"""Second-hop sentences of a multi-hop question, which the sentence rule drops.

"Where was the director of Inception born?" needs a sentence naming Inception's director (it matches the
question) and one giving that person's birthplace (it matches nothing in the question, only the name the first
sentence introduced). A sentence rule scoring each sentence against the query drops the second. The bridge
rule brings it back: a dropped sentence of another passage is kept when it shares a name or number (a
capitalised word or a numeral, as the index's BM25 tokens it, stopwords out) with the call's best sentence that
the question does not contain. Only the best sentence is followed, so the cost stays small. On dev it keeps
6.5 points more of MuSiQue's gold sentences for 4.5 points less removal, but gives SciFact and XQuAD nothing,
so it is off by default (docs/benchmarks.md, "Bridge sentences").
"""

from __future__ import annotations

import re

from ragpress.scoring.lexical import query_terms, term_counts
from ragpress.scoring.sentences import Span

# Capitalised words and numerals: where a bridge entity shows up in English text.
NAME_OR_NUMBER = re.compile(r"\b(?:[A-Z][\w'’-]*|\d[\d.,]*)")


def entity_terms(sentence: str) -> set[int]:
    """BM25 terms of the sentence's names and numbers (stemmed, stopwords removed)."""
    return {term for match in NAME_OR_NUMBER.findall(sentence) for term in term_counts(match)}


def bridged_sentences(
    query: str, passages: list[tuple[str, list[Span]]], scores: list[list[float]], cutoff: float
) -> list[list[int]]:
    """Per passage, the indices of sentences below ``cutoff`` that the bridge rule keeps."""
    best = max(
        ((score, p, i) for p, row in enumerate(scores) for i, score in enumerate(row)), default=None
    )
    extra: list[list[int]] = [[] for _ in passages]
    if best is None or best[0] < cutoff:  # nothing is kept, so there is no first hop to follow
        return extra
    _, best_passage, best_index = best
    text, spans = passages[best_passage]
    start, end = spans[best_index]
    bridges = entity_terms(text[start:end]) - query_terms(query)
    if not bridges:
        return extra
    for p, ((text, spans), row) in enumerate(zip(passages, scores, strict=True)):
        if p == best_passage:
            continue
        extra[p] = [i for i, (score, (s, e)) in enumerate(zip(row, spans, strict=True))
                    if score < cutoff and entity_terms(text[s:e]) & bridges]
    return extra
