"""Sentence boundaries as character spans.

Chunkers pack whole sentences, the pruner keeps or drops whole sentences, and the KV generator masks the
cached positions of dropped sentences, so all three must agree on where sentences are. This splitter needs
no downloaded data (NLTK's punkt does), which matters on machines without a hub.
"""

from __future__ import annotations

import re

from haystack import Document

from ragpress.base.schema import SENTENCES

Span = tuple[int, int]  # (start, end) character offsets of one sentence

# Abbreviations whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st vs etc al fig figs eq eqs no nos vol pp ca approx e.g i.e cf resp
    inc ltd co corp dept univ jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k
    """.split()
)

# A sentence ends at . ! ? (or CJK terminators), optionally followed by closing quotes/brackets, then
# whitespace and something that can start a sentence; or at a blank line.
_BOUNDARY = re.compile(
    r"""(?:(?<=[.!?])|(?<=[.!?]["'”’)\]]))\s+(?=["'“‘(\[]?[A-Z0-9À-ÖØ-Þ\u0370-\u03ff\u0400-\u04ff])"""
    r"""|(?<=[。！？])|\n\s*\n"""
)
_WORD_BEFORE = re.compile(r"([\w.]+)\.$")


def split_sentences(text: str) -> list[Span]:
    """Return ``(start, end)`` character spans of the sentences in ``text``, stripped of surrounding
    whitespace, in order, covering every non-whitespace character exactly once."""
    spans: list[Span] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.start()
        if _is_abbreviation(text[start:end]):
            continue
        _append_stripped(text, start, end, spans)
        start = match.end()
    _append_stripped(text, start, len(text), spans)
    return spans


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def document_spans(document: Document) -> list[Span]:
    """The document's sentence spans: ``meta["sentences"]`` when the chunker stored them, else the shared
    splitter's, so kept indices always match what the chunker and the KV generator use."""
    stored = (document.meta or {}).get(SENTENCES)
    if stored:
        return [(int(s), int(e)) for s, e in stored]
    return split_sentences(document.content or "")


def _is_abbreviation(candidate: str) -> bool:
    match = _WORD_BEFORE.search(candidate.rstrip())
    if not match:
        return False
    word = match.group(1).lower()
    # Single letters ("J. Smith") and known abbreviations do not end sentences.
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _append_stripped(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))
