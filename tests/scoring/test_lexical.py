"""The lexical match: BM25 terms as the index tokens them, IDF over the candidates, coverage of the query."""

import math

import pytest

from ragpress.scoring import lexical


def test_terms_are_the_index_tokens_counted_stemmed_and_without_stopwords():
    counts = lexical.term_counts("The dog chased the dogs. Dog!")
    assert sorted(counts.values()) == [1, 3]  # dog x3 (stemmed), chased x1; "the" is a stopword
    assert lexical.term_counts("   ") == {}
    assert lexical.query_terms("dogs") <= set(counts)


def test_candidate_idf_is_bm25_idf_over_the_candidates():
    passages = [lexical.term_counts(t) for t in ("ferritin levels", "ferritin intake", "vitamin intake")]
    (ferritin,) = lexical.query_terms("ferritin")
    (vitamin,) = lexical.query_terms("vitamin")
    idf = lexical.candidate_idf({ferritin, vitamin}, passages)
    assert idf[ferritin] == pytest.approx(math.log(1 + (3 - 2 + 0.5) / (2 + 0.5)))
    assert idf[vitamin] == pytest.approx(math.log(1 + (3 - 1 + 0.5) / (1 + 0.5)))
    assert idf[vitamin] > idf[ferritin]  # rarer among the candidates weighs more


def test_coverage_rewards_the_rare_query_term_and_stays_in_the_unit_interval():
    query = "Does rs7903146 in TCF7L2 raise diabetes risk?"
    texts = [
        "Diabetes risk rises with obesity and age.",
        "The rs7903146 variant of TCF7L2 is associated with diabetes risk.",
        "Diabetes risk in the elderly population.",
        "",
    ]
    scores = lexical.bm25_coverage(query, texts)
    assert scores[1] == max(scores)
    assert scores[0] == pytest.approx(scores[2], rel=0.2)  # both match only the common terms
    assert scores[3] == 0.0
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert lexical.bm25_coverage("", texts) == [0.0] * len(texts)
    assert lexical.bm25_coverage(query, []) == []
