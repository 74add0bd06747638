"""The bridge rule: a multi-hop question's second-hop sentence is kept because it names what the best sentence
introduced, not because it matches the question."""

from __future__ import annotations

import pytest
from haystack import Document

from ragpress.pruners.bridge import bridged_sentences, entity_terms
from ragpress.pruners.component import ProvencePruner

QUERY = "Where was the director of Inception born?"
FIRST_HOP = "Inception is a 2010 film directed by Christopher Nolan."
SECOND_HOP = "Christopher Nolan was born in Westminster, London."
UNRELATED = "The festival moved to a larger venue that year."


def passages(*texts: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """One passage per text, each sentence its own span."""
    result = []
    for text in texts:
        spans, start = [], 0
        for sentence in text.split("|"):
            spans.append((start, start + len(sentence)))
            start += len(sentence) + 1
        result.append((text, spans))
    return result


@pytest.mark.unit
def test_a_dropped_sentence_naming_what_the_best_sentence_introduced_is_kept() -> None:
    found = bridged_sentences(QUERY, passages(FIRST_HOP, f"{UNRELATED}|{SECOND_HOP}"), [[0.9], [0.01, 0.02]], 0.5)
    assert found == [[], [1]]


@pytest.mark.unit
def test_names_the_question_already_holds_and_capitalised_stopwords_are_no_bridge() -> None:
    # The best sentence shares only "Inception" (in the question) and "The" (a stopword) with the others.
    best = "The film Inception premiered in cinemas."
    other = "The Inception of modern cinema is often dated to Lumière."
    assert bridged_sentences(QUERY, passages(best, other), [[0.9], [0.01]], 0.5) == [[], []]
    assert not entity_terms("The It This")


@pytest.mark.unit
def test_only_other_passages_are_bridged_and_only_from_a_kept_best_sentence() -> None:
    same_passage = passages(f"{FIRST_HOP}|{SECOND_HOP}")
    assert bridged_sentences(QUERY, same_passage, [[0.9, 0.01]], 0.5) == [[]]
    nothing_kept = passages(FIRST_HOP, SECOND_HOP)
    assert bridged_sentences(QUERY, nothing_kept, [[0.4], [0.01]], 0.5) == [[], []]


@pytest.mark.unit
def test_numbers_bridge_too() -> None:
    texts = passages("The tower opened in 1889.", "In 1889 Paris hosted a fair.")
    assert bridged_sentences("When did the tower open?", texts, [[0.9], [0.01]], 0.5) == [[], [0]]


@pytest.mark.integration
def test_the_pruner_keeps_the_other_hop_with_the_bridge_on_at_init_or_at_run() -> None:
    documents = [Document(id="a", content=f"{FIRST_HOP} {UNRELATED}"),
                 Document(id="b", content=f"{UNRELATED} {SECOND_HOP}")]
    scored = ProvencePruner(ranking="input").run(query=QUERY, documents=documents, threshold=0.0)["documents"]
    ranked = sorted(((s, d.id, i) for d in scored for i, s in enumerate(d.meta["sentence_scores"])), reverse=True)
    # The two hops outscore the unrelated filler; a threshold between them keeps the better hop alone.
    assert {ranked[0][1:], ranked[1][1:]} == {("a", 0), ("b", 1)}
    threshold = (ranked[0][0] + ranked[1][0]) / 2
    best, hop = ranked[0][1], {"a": 0, "b": 1}
    alone = {d: [hop[d]] if d == best else [] for d in hop}

    def kept(pruner: ProvencePruner, **run: bool) -> dict[str, list[int]]:
        result = pruner.run(query=QUERY, documents=documents, threshold=threshold, **run)["documents"]
        return {d.id: d.meta["kept_sentences"] for d in result}

    assert kept(ProvencePruner(ranking="input")) == alone
    assert kept(ProvencePruner(ranking="input"), bridge=True) == {"a": [0], "b": [1]}
    assert kept(ProvencePruner(ranking="input", bridge=True)) == {"a": [0], "b": [1]}
    assert kept(ProvencePruner(ranking="input", bridge=True), bridge=False) == alone
