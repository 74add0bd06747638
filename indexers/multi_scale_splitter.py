"""Multi-scale units: slices ⊂ chunks ⊂ sections ⊂ documents, for retrieval that expands upward.

The query side retrieves at the finest scale, merges neighbouring slices and climbs to the enclosing chunk,
section or document under a token budget (MacRAG; Haystack's hierarchical splitter / auto-merging
retriever). For that, every unit records its ``level``, its parent's id, its ``position`` among the units of
its level in the document, its character offsets in the document and its sentence spans (relative to its
own text). Sections exist where the document has Markdown (ATX) headings; otherwise chunks hang directly
off the document. Every boundary is a sentence boundary, so a parent's text is exactly its children's text
with the whitespace between them, and sentences never cross a section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.indexers.sentence_chunker import pack_sentences
from ragpress.scoring.sentences import split_sentences

Span = tuple[int, int]

_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)
MAX_TITLE_CHARS = 200


def section_spans(text: str) -> list[Span]:
    """Character spans of the Markdown sections of ``text`` (a heading up to the next one; text before
    the first heading is a section of its own). Headings inside fenced code blocks do not count.
    Returns ``[]`` when there are no headings."""
    fenced = _fenced_ranges(text)
    starts = [m.start() for m in _HEADING.finditer(text) if not any(a <= m.start() < b for a, b in fenced)]
    if not starts:
        return []
    if text[:starts[0]].strip():
        starts.insert(0, 0)
    bounds = [*starts, len(text)]
    spans = [_strip(text, a, b) for a, b in pairwise(bounds)]
    return [s for s in spans if s[1] > s[0]]


def document_title(text: str, meta: dict[str, Any]) -> str:
    """The caller's ``meta["title"]`` when it is text, else the heading the document opens with, else ""."""
    given = meta.get(schema.TITLE)
    if isinstance(given, str) and given.strip():
        return " ".join(given.split())[:MAX_TITLE_CHARS]
    opening = _HEADING.match(text.lstrip())
    if opening is None:
        return ""
    first_line = text.lstrip().split("\n", 1)[0]
    return " ".join(first_line.strip().lstrip("#").split())[:MAX_TITLE_CHARS]


def _fenced_ranges(text: str) -> list[Span]:
    marks = [m.start() for m in _FENCE.finditer(text)]
    return [(marks[i], marks[i + 1]) for i in range(0, len(marks) - 1, 2)]


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass
class _Builder:
    """Makes the units of one document, numbering positions per level."""

    document: Document
    strategy: str

    def __post_init__(self) -> None:
        self.text = self.document.content or ""
        self.digest = self.document.meta.get(schema.CONTENT_HASH) or schema.content_hash(self.text)
        self.title = document_title(self.text, self.document.meta)
        self.counts: dict[str, int] = {}
        self.units: list[Document] = []

    def add(self, level: str, sentences: list[Span], parent_id: str | None) -> str:
        meta = self.document.meta
        position = self.counts.get(level, 0)
        self.counts[level] = position + 1
        start, end = sentences[0][0], sentences[-1][1]
        unit_meta = {
            **meta, schema.CONTENT_HASH: self.digest, schema.LEVEL: level, schema.PARENT_ID: parent_id,
            schema.POSITION: position, schema.START: start, schema.END: end,
            schema.SENTENCES: [[s - start, e - start] for s, e in sentences], schema.STRATEGY: self.strategy,
        }
        if self.title:
            unit_meta[schema.TITLE] = self.title
        uid = schema.unit_id_of(unit_meta)
        self.units.append(Document(id=uid, content=self.text[start:end], meta=unit_meta))
        return uid


@component
class MultiScaleSplitter:
    """Splits each document into units at every scale: document, sections, chunks, slices.

    Chunks pack whole sentences up to ``chunk_tokens`` tokens inside a section; slices pack a chunk's
    sentences up to ``slice_tokens`` (a longer sentence is a slice of its own). The output holds every level
    (embed them all; filter on ``meta.level`` at query time).

    Usage:
        >>> splitter = MultiScaleSplitter(chunk_tokens=128, slice_tokens=32)
        >>> units = splitter.run(documents=[Document(content="# A\\n\\nOne. Two.", meta={"doc_id": "a"})])
        >>> sorted({u.meta["level"] for u in units["documents"]})
        ['chunk', 'document', 'section', 'slice']
    """

    role: ClassVar[Role] = Role.CHUNKER

    def __init__(self, chunk_tokens: int = 128, slice_tokens: int = 32, include_document: bool = True,
                 tokenizer_model: str = "all-MiniLM-L6-v2") -> None:
        _check_budgets(chunk_tokens, slice_tokens)
        self.chunk_tokens = chunk_tokens
        self.slice_tokens = slice_tokens
        self.include_document = include_document
        self.tokenizer_model = tokenizer_model
        self._tokenizer: Any = None

    def warm_up(self) -> None:
        if self._tokenizer is None:
            self._tokenizer = sentence_transformer(self.tokenizer_model).tokenizer

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, chunk_tokens=self.chunk_tokens, slice_tokens=self.slice_tokens,
                               include_document=self.include_document, tokenizer_model=self.tokenizer_model)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiScaleSplitter:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], chunk_tokens: int | None = None,
            slice_tokens: int | None = None) -> dict[str, list[Document]]:
        """
        :param documents: converted documents with their scope and document id in ``meta``.
        :param chunk_tokens: overrides the init value for this run.
        :param slice_tokens: overrides the init value for this run.
        :returns: ``documents``: every level's units, each with level, parent, position, offsets and sentences.
        """
        chunk_budget, slice_budget = chunk_tokens or self.chunk_tokens, slice_tokens or self.slice_tokens
        _check_budgets(chunk_budget, slice_budget)
        self.warm_up()
        units: list[Document] = []
        for document in documents:
            units.extend(self._split(document, chunk_budget, slice_budget))
        return {"documents": units}

    def _split(self, document: Document, chunk_budget: int, slice_budget: int) -> list[Document]:
        text = document.content or ""
        headed = section_spans(text)
        sections = headed or [(0, len(text))]
        # Sentences are found per section so none crosses a heading.
        per_section = [[(a + s, a + e) for s, e in split_sentences(text[a:b])] for a, b in sections]
        per_section = [spans for spans in per_section if spans]
        if not per_section:
            return []
        builder = _Builder(document, "fixed")
        everything = [span for spans in per_section for span in spans]
        root = builder.add("document", everything, None) if self.include_document else None
        for spans in per_section:
            parent = builder.add("section", spans, root) if headed else root
            self._chunks(builder, spans, parent, chunk_budget, slice_budget)
        return builder.units

    def _chunks(self, builder: _Builder, spans: list[Span], parent: str | None, chunk_budget: int,
                slice_budget: int) -> None:
        counts = self._token_counts(builder.text, spans)
        for group in pack_sentences(spans, counts, chunk_budget):
            chunk_id = builder.add("chunk", [spans[i] for i in group], parent)
            sub_counts = [counts[i] for i in group]
            for sub in pack_sentences([spans[i] for i in group], sub_counts, slice_budget):
                builder.add("slice", [spans[group[i]] for i in sub], chunk_id)

    def _token_counts(self, text: str, spans: list[Span]) -> list[int]:
        encoded = self._tokenizer([text[s:e] for s, e in spans], add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


def _check_budgets(chunk_tokens: int, slice_tokens: int) -> None:
    if slice_tokens < 4:
        raise ValueError("slice_tokens must be at least 4.")
    if chunk_tokens < slice_tokens:
        raise ValueError("chunk_tokens must be at least slice_tokens (slices lie inside chunks).")
