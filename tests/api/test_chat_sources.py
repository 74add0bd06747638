"""A chat answer's sources are numbered as the generator's prompt labels its passages, so a citation [n] the model
writes names the source with index n, however many passages the context budget kept."""

from __future__ import annotations

from typing import Any

import pytest
from haystack import Document

from ragpress.api.routes_chat import sources
from ragpress.base.schema import PRUNED_TEXT
from ragpress.generators.prompting import passage_text, passages_for_prompt, user_message

pytestmark = pytest.mark.unit

# Most relevant first, as a pipeline hands them to the generator; the second was pruned to nothing.
PRUNED = ["The tower opened in 1889.", "", "Quokkas live on Rottnest Island.", "Kosciuszko is 2,228 m high."]


def passage_out(document: Document) -> dict[str, Any]:
    """The document as a query response lists it."""
    return {"id": document.id, "doc_id": f"doc-{document.id}", "text": document.content, "score": 0.5,
            "level": "chunk", "sentences": [], "meta": {}, "pruned_text": document.meta[PRUNED_TEXT]}


def test_each_source_carries_the_label_the_prompt_gave_its_passage() -> None:
    documents = [Document(id=f"c{i}", content=f"Whole chunk {i}.", meta={PRUNED_TEXT: text})
                 for i, text in enumerate(PRUNED)]
    read = [d for d in documents if passage_text(d).strip()]  # what a generator reads of them
    budget = len(PRUNED[0]) + len(PRUNED[2])  # room for the two most relevant only
    prompt = user_message("When did the tower open?", passages_for_prompt(read, len, budget))

    numbered = sources([passage_out(d) for d in documents])

    assert [(s.index, s.id) for s in numbered] == [(1, "c0"), (2, "c2"), (3, "c3")]
    for source in numbered[:2]:
        assert f"[{source.index}] {source.pruned_text}\n" in prompt
    assert PRUNED[3] not in prompt and "[3]" not in prompt  # over the budget: never shown, never citable
    # the most relevant passage is [1] although it is shown last, nearest the question
    assert prompt.index("[2] ") < prompt.index("[1] ") < prompt.index("Question:")
