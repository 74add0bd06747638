"""Sentence spans: the unit that chunkers pack, the pruner keeps or drops, and the KV generator masks."""

from __future__ import annotations

from itertools import pairwise

import pytest

from ragpress.scoring.sentences import sentences, split_sentences

pytestmark = pytest.mark.unit


def test_sentences_split_at_terminal_punctuation() -> None:
    expected = ["It rained.", "Then it stopped!", "Did it?", "Yes."]
    assert sentences("It rained. Then it stopped! Did it? Yes.") == expected


def test_abbreviations_initials_and_decimals_do_not_end_sentences() -> None:
    text = "Dr. Smith met J. Doe at 3.5 p.m. on Jan. 3. They talked."
    assert sentences(text) == ["Dr. Smith met J. Doe at 3.5 p.m. on Jan. 3.", "They talked."]


def test_blank_lines_end_sentences_even_without_punctuation() -> None:
    assert sentences("# Heading\n\nBody text here") == ["# Heading", "Body text here"]


def test_spans_cover_all_non_space_text_in_order() -> None:
    text = "  First one.  Second one?\n\nThird…   "
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one?", "Third…"]
    assert all(a[1] <= b[0] for a, b in pairwise(spans))


def test_empty_and_whitespace_text_has_no_sentences() -> None:
    assert split_sentences("") == [] and split_sentences(" \n\t ") == []


def test_non_latin_scripts_are_split() -> None:
    assert sentences("Москва большая. Она столица.") == ["Москва большая.", "Она столица."]
    assert sentences("東京は大きい。次の文。") == ["東京は大きい。", "次の文。"]
