"""Lexical match of a query against a candidate list: BM25 whose statistics come from the candidates alone.

Dense MiniLM retrieval misses exact matches of rare terms (gene names, drug names, numbers); a reranker sees
only the retrieved list, not the corpus, so the IDF of a term is taken over the candidates: a term in one of
twenty passages separates them, a term in all of them does not. Terms are Qdrant Edge's BM25 tokens (the
same tokenizer, stemmer and stopwords as the index's sparse vectors).
"""

from __future__ import annotations

import math
from collections import Counter

import qdrant_edge as edge

K1 = 1.2
B = 0.75

# b = 0 and a huge k turn Edge's BM25 document weight tf*(k+1)/(tf+k) into the raw term count.
_COUNTER = edge.Bm25(edge.Bm25Config(b=0.0, k=1e9))


def term_counts(text: str) -> Counter[int]:
    """Term (hashed, stemmed, stopwords removed) -> count in ``text``."""
    if not text.strip():
        return Counter()
    vector = _COUNTER.embed_document(text)
    return Counter({int(i): max(1, round(v)) for i, v in zip(vector.indices, vector.values, strict=True)})


def query_terms(query: str) -> set[int]:
    return set() if not query.strip() else {int(i) for i in _COUNTER.embed_query(query).indices}


def candidate_idf(terms: set[int], passages: list[Counter[int]]) -> dict[int, float]:
    """BM25's IDF of each query term, counted over the candidate passages (never negative)."""
    n = len(passages)
    return {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t in terms if (df := sum(t in p for p in passages))}


def bm25_coverage(query: str, texts: list[str], k1: float = K1, b: float = B) -> list[float]:
    """Per passage, its BM25 score for ``query`` divided by the best score a passage could reach (every
    query term matched, term weight at its ceiling k1 + 1), so it lies in [0, 1] and reads as how much of
    the query's rare vocabulary the passage holds, whatever the query's length."""
    passages = [term_counts(t) for t in texts]
    terms = query_terms(query)
    if not terms or not passages:
        return [0.0] * len(texts)
    idf = candidate_idf(terms, passages)
    # The ceiling counts every query term, matched or not: a passage is judged against the whole query.
    ceiling = (k1 + 1) * sum(idf.get(t, math.log(1 + (len(passages) + 0.5) / 0.5)) for t in terms)
    lengths = [sum(p.values()) for p in passages]
    average = max(1.0, sum(lengths) / len(lengths))
    scores = []
    for counts, length in zip(passages, lengths, strict=True):
        norm = k1 * (1 - b + b * length / average)
        score = sum(w * counts[t] * (k1 + 1) / (counts[t] + norm) for t, w in idf.items() if counts[t])
        scores.append(score / ceiling)
    return scores
