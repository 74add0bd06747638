"""Situated chunking: a short chunk's vector is computed inside a wider window of its document.

The idea of SitEmb (situated embeddings) without training a model: the embedder reads a window of
``context_tokens`` tokens around the chunk (the whole document when it fits), the chunk's vector is
the mean of its own contextual token embeddings, and a share ``context_weight`` of the window's vector is
mixed in so that the chunk also matches queries about what its surroundings say. A document title
(``title_key`` in its meta) can lead every window, as "contextual retrieval" does with an LLM-written
context. The chunk's text stays short: it is the evidence returned to the user. As in the late chunker,
``local_weight`` mixes back a share of the chunk's vector read alone, so siblings stay apart.

Windows are shared: long documents are read in windows at a stride of half a window and each chunk takes
the one where it sits most centrally, so chunks have context on both sides at about twice the cost of one
pass (a window per chunk would cost a pass per chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.devices import check_device
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.indexers.late_chunker import (
    TokenEncoder,
    Tokens,
    blend,
    check_weight,
    document_prompt,
    local_vectors,
    plan_windows,
    with_vectors,
)
from ragpress.indexers.sentence_chunker import SentenceChunker

Span = tuple[int, int]


@dataclass(frozen=True)
class SituatedParts:
    """Chunks (without vectors), their own pooled vectors, their windows' vectors and their vectors read alone
    (no context), all normalized."""

    chunks: list[Document]
    chunk_vectors: torch.Tensor
    window_vectors: torch.Tensor
    local_vectors: torch.Tensor | None  # None when not asked for


def situating_windows(chunks: list[Span], n_tokens: int, size: int) -> list[Span]:
    """For each chunk (token range), the window it is read in: windows of ``size`` tokens at a stride of
    half a window, so every chunk up to half a window long lies wholly inside one; each chunk takes the
    window where it sits most centrally. Neighbouring chunks share windows, which keeps the cost at about
    two passes over the document instead of one window per chunk."""
    plan = plan_windows(n_tokens, size, size // 2)
    chosen = []
    for i, j in chunks:
        def margin(window: tuple[int, int, int, int], i: int = i, j: int = j) -> tuple[bool, int]:
            start, end = window[0], window[1]
            inside = start <= i and min(j, start + size) <= end
            return inside, min(i - start, end - j)
        best = max(plan, key=margin)
        chosen.append((best[0], best[1]))
    return chosen


def mix(parts: SituatedParts, context_weight: float, local_weight: float = 0.0, normalize: bool = True) -> torch.Tensor:
    """``(1 - w) * chunk + w * window`` (the situated vector), then ``(1 - l) * situated + l * alone``."""
    situated = blend(parts.chunk_vectors, parts.window_vectors, context_weight, normalize)
    if local_weight == 0.0:
        return situated
    if parts.local_vectors is None:
        raise ValueError("these parts were encoded without local vectors; ask parts() for them.")
    return blend(situated, parts.local_vectors, local_weight, normalize)


@component
class SituatedChunker:
    """Sentence-packed chunks of at most ``max_tokens`` tokens, each embedded inside a wider window.

    Output chunks carry ``strategy: situated`` and their embedding; their text is the short chunk.
    ``context_weight`` (the window's share) and ``local_weight`` (the share of the chunk read alone) default
    to the weights bench/chunking.py picked on its dev split.

    Usage:
        >>> chunker = SituatedChunker(model="all-MiniLM-L6-v2", max_tokens=64, context_weight=0.25)
        >>> chunks = chunker.run(documents=[Document(content=text, meta={"doc_id": "a"})])["documents"]
    """

    role: ClassVar[Role] = Role.CHUNKER

    def __init__(self, model: str = "all-MiniLM-L6-v2", max_tokens: int = 128, overlap_sentences: int = 0,
                 context_tokens: int | None = None, context_weight: float = 0.0, title_key: str | None = None,
                 batch_size: int = 16, prompt_name: str | None = "document", local_weight: float = 0.25,
                 device: str = "auto") -> None:
        if not model:
            raise ValueError("model must name a registry model, a Hugging Face id or a directory.")
        check_weight("context_weight", context_weight)
        check_weight("local_weight", local_weight)
        if context_tokens is not None and context_tokens < 32:
            raise ValueError("context_tokens must be at least 32.")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        self.device = check_device(device)
        self.model = model
        self.max_tokens = max_tokens
        self.overlap_sentences = overlap_sentences
        self.context_tokens = context_tokens
        self.context_weight = context_weight
        self.title_key = title_key
        self.batch_size = batch_size
        self.prompt_name = prompt_name
        self.local_weight = local_weight
        self._splitter = SentenceChunker(max_tokens, overlap_sentences, tokenizer_model=model)
        self._encoder: TokenEncoder | None = None

    def warm_up(self) -> None:
        if self._encoder is None:
            loaded = sentence_transformer(self.model, self.device)
            self._encoder = TokenEncoder(loaded, self.context_tokens, document_prompt(loaded, self.prompt_name))
            self._splitter.warm_up()

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, model=self.model, max_tokens=self.max_tokens,
                               overlap_sentences=self.overlap_sentences, context_tokens=self.context_tokens,
                               context_weight=self.context_weight, title_key=self.title_key,
                               batch_size=self.batch_size, prompt_name=self.prompt_name,
                               local_weight=self.local_weight, device=self.device)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SituatedChunker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], max_tokens: int | None = None,
            context_weight: float | None = None, local_weight: float | None = None) -> dict[str, list[Document]]:
        """
        :param documents: whole documents.
        :param max_tokens: overrides the init value for this run.
        :param context_weight: overrides the init value for this run.
        :param local_weight: overrides the init value for this run.
        :returns: ``documents``: the chunks with their situated embeddings.
        """
        weight = self.context_weight if context_weight is None else check_weight("context_weight", context_weight)
        local = self.local_weight if local_weight is None else check_weight("local_weight", local_weight)
        parts = self.parts(documents, max_tokens, with_local=local > 0)
        vectors = mix(parts, weight, local, self._token_encoder().normalizes)
        return {"documents": with_vectors(parts.chunks, vectors, "situated")}

    def parts(self, documents: list[Document], max_tokens: int | None = None, with_local: bool = True) -> SituatedParts:
        """Chunk and encode, keeping the vectors apart (the benchmark mixes them at several weights)."""
        self.warm_up()
        groups = [self._encode_group(documents[begin:begin + self.batch_size * 4], max_tokens or self.max_tokens,
                                     with_local)
                  for begin in range(0, len(documents), self.batch_size * 4)]
        empty = torch.empty(0, self._encoder.dimension if self._encoder else 0)

        def joined(tensors: list[torch.Tensor | None]) -> torch.Tensor:
            present = [t for t in tensors if t is not None]
            return torch.cat(present) if present else empty

        return SituatedParts([c for g in groups for c in g.chunks], joined([g.chunk_vectors for g in groups]),
                             joined([g.window_vectors for g in groups]),
                             joined([g.local_vectors for g in groups]) if with_local else None)

    def _token_encoder(self) -> TokenEncoder:
        self.warm_up()
        assert self._encoder is not None
        return self._encoder

    def _encode_group(self, documents: list[Document], max_tokens: int, with_local: bool) -> SituatedParts:
        encoder = self._encoder
        assert encoder is not None
        chunks: list[Document] = []
        requests: list[tuple[int, Span]] = []  # (window index, chunk token range inside the window)
        windows: dict[tuple[int, Span], int] = {}
        sequences: list[list[int]] = []
        for doc_index, document in enumerate(documents):
            planned = self._splitter.run(documents=[document], max_tokens=max_tokens)["documents"]
            if not planned:
                continue
            tokens = encoder.tokenize(document.content or "")
            title = self._title_ids(encoder, document)
            size = encoder.capacity - len(title)
            ranges = [tokens.token_range(c.meta[schema.START], c.meta[schema.END]) for c in planned]
            for chunk, (i, j), (left, right) in zip(
                    planned, ranges, situating_windows(ranges, len(tokens.ids), size), strict=True):
                i, j = max(i, left), min(j, right)  # a chunk longer than the window is truncated
                key = (doc_index, (left, right))
                if key not in windows:
                    windows[key] = len(sequences)
                    sequences.append(title + tokens.ids[left:right])
                offset = len(title) - left
                requests.append((windows[key], (i + offset, j + offset)))
                chunks.append(chunk)
        return self._pool(chunks, requests, sequences, with_local)

    def _pool(self, chunks: list[Document], requests: list[tuple[int, Span]], sequences: list[list[int]],
              with_local: bool) -> SituatedParts:
        encoder = self._encoder
        assert encoder is not None
        unit = torch.nn.functional.normalize
        texts = [c.content or "" for c in chunks]
        local = unit(local_vectors(encoder, texts, self.batch_size), dim=-1) if with_local else None
        if not requests:
            empty = torch.empty(0, encoder.dimension)
            return SituatedParts(chunks, empty, empty, local)
        encoded = encoder.encode(sequences, self.batch_size)
        own = torch.stack([_mean(encoded[w][i:j]) for w, (i, j) in requests])
        context = torch.stack([_mean(encoded[w]) for w, _ in requests])
        return SituatedParts(chunks, unit(encoder.apply_head(own), dim=-1),
                             unit(encoder.apply_head(context), dim=-1), local)

    def _title_ids(self, encoder: TokenEncoder, document: Document) -> list[int]:
        title = document.meta.get(self.title_key) if self.title_key else None
        if not title:
            return []
        # A title longer than half the window would crowd out the context it is meant to label.
        return _title_tokens(encoder.tokenize(f"{title}."), encoder.capacity // 2)


def _title_tokens(tokens: Tokens, limit: int) -> list[int]:
    return tokens.ids[:limit]


def _mean(rows: torch.Tensor) -> torch.Tensor:
    return rows.mean(0) if len(rows) else rows.new_zeros(rows.shape[1])
