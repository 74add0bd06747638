"""The baseline chunker: whole sentences packed into chunks of at most ``max_tokens`` tokens."""

from __future__ import annotations

from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.scoring.sentences import split_sentences

Span = tuple[int, int]


def pack_sentences(
    sentence_spans: list[Span], token_counts: list[int], max_tokens: int, overlap_sentences: int = 0
) -> list[list[int]]:
    """Group consecutive sentence indices into chunks of at most ``max_tokens`` tokens.

    A sentence longer than the budget becomes a chunk of its own (the embedder truncates it; the text is
    kept whole so nothing is lost). ``overlap_sentences`` repeats the last sentences of a chunk at the start
    of the next one."""
    chunks: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, count in enumerate(token_counts):
        if current and used + count > max_tokens:
            chunks.append(current)
            current = current[-overlap_sentences:] if overlap_sentences else []
            used = sum(token_counts[i] for i in current)
        current.append(index)
        used += count
    if current:
        chunks.append(current)
    return chunks


def chunk_units(document: Document, groups: list[list[int]], spans: list[Span], strategy: str,
                level: str = "chunk", parent_id: str | None = None) -> list[Document]:
    """Chunk Documents (without vectors) for sentence groups of ``document``, with ragpress's meta."""
    text = document.content or ""
    meta = document.meta
    digest = meta.get(schema.CONTENT_HASH) or schema.content_hash(text)
    units = []
    for position, group in enumerate(groups):
        start, end = spans[group[0]][0], spans[group[-1]][1]
        unit_meta = {
            **meta,
            schema.CONTENT_HASH: digest,
            schema.LEVEL: level,
            schema.PARENT_ID: parent_id,
            schema.POSITION: position,
            schema.START: start,
            schema.END: end,
            schema.SENTENCES: [[s - start, e - start] for s, e in (spans[i] for i in group)],
            schema.STRATEGY: strategy,
        }
        units.append(Document(id=schema.unit_id_of(unit_meta), content=text[start:end], meta=unit_meta))
    return units


@component
class SentenceChunker:
    """Splits documents into chunks of whole sentences, at most ``max_tokens`` tokens each.

    Tokens are counted with the embedder's tokenizer so chunks fit its window. Each chunk records its
    character offsets and its sentences' spans (the pruner and the KV generator rely on them).

    Usage:
        >>> chunker = SentenceChunker(max_tokens=128)
        >>> chunker.run(documents=[Document(content="One. Two.", meta={"doc_id": "a"})])["documents"]
    """

    role: ClassVar[Role] = Role.CHUNKER

    def __init__(self, max_tokens: int = 128, overlap_sentences: int = 0,
                 tokenizer_model: str = "all-MiniLM-L6-v2") -> None:
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8.")
        if overlap_sentences < 0:
            raise ValueError("overlap_sentences must not be negative.")
        self.max_tokens = max_tokens
        self.overlap_sentences = overlap_sentences
        self.tokenizer_model = tokenizer_model
        self._tokenizer: Any = None

    def warm_up(self) -> None:
        if self._tokenizer is None:
            self._tokenizer = sentence_transformer(self.tokenizer_model).tokenizer

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, max_tokens=self.max_tokens, overlap_sentences=self.overlap_sentences,
                               tokenizer_model=self.tokenizer_model)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentenceChunker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], max_tokens: int | None = None) -> dict[str, list[Document]]:
        """
        :param documents: documents to cut on sentence boundaries.
        :param max_tokens: overrides the init value for this run.
        :returns: ``documents``: the chunks, with offsets and sentence spans.
        """
        self.warm_up()
        budget = max_tokens or self.max_tokens
        chunks: list[Document] = []
        for document in documents:
            spans = split_sentences(document.content or "")
            if not spans:
                continue
            texts = [(document.content or "")[s:e] for s, e in spans]
            counts = [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]
            groups = pack_sentences(spans, counts, budget, self.overlap_sentences)
            chunks.extend(chunk_units(document, groups, spans, strategy="fixed"))
        return {"documents": chunks}
