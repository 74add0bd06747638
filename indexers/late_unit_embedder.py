"""Contextual vectors for every unit of a multi-scale index, pooled out of one pass over each document.

``DocumentEmbedder`` reads every unit alone: a document's text is read once for the document unit, again in
its sections, again in its chunks and again in its slices, and no unit sees what surrounds it. Here each
document is read once (in overlapping windows when it exceeds the model's window), and every unit's vector,
whatever its level, is the model's head over the mean of the token embeddings inside the unit's character
span: late chunking applied to all scales at the price of about one embedder pass per document.

The document is rebuilt from its units (each unit's text at its offsets, uncovered characters read as spaces,
which a word-piece tokenizer skips like any whitespace), so this takes the splitter's output and nothing else.
``local_weight`` mixes back each unit's vector read alone for the levels in ``local_levels`` (the chunks that
queries retrieve, by default): one more short pass over those units only, for their local signal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, ClassVar

import torch
from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.devices import check_device
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.indexers.late_chunker import (
    TokenEncoder,
    blend,
    check_reading,
    check_weight,
    document_prompt,
    local_vectors,
    mean_pool,
)

STRATEGY = "late"


def document_text(units: list[Document]) -> str:
    """One document's text rebuilt from its units: each unit's content at its ``start`` offset, spaces between."""
    pieces: list[str] = []
    cursor = 0
    for unit in sorted(units, key=lambda u: (u.meta[schema.START], -u.meta[schema.END])):
        start, content = unit.meta[schema.START], unit.content or ""
        if start + len(content) <= cursor:
            continue  # inside what an enclosing unit already gave
        pieces.append(" " * (start - cursor) if start > cursor else "")
        pieces.append(content[max(0, cursor - start):])
        cursor = start + len(content)
    return "".join(pieces)


def by_document(units: list[Document]) -> list[list[Document]]:
    """Units grouped by the document version they came from, in order of first appearance."""
    groups: dict[tuple[Any, ...], list[Document]] = {}
    for unit in units:
        meta = unit.meta
        missing = [f for f in (schema.START, schema.END, schema.CONTENT_HASH) if f not in meta]
        if missing:
            raise ValueError(f"unit {unit.id} has no meta {missing}: LateUnitEmbedder takes the units of a "
                             "MultiScaleSplitter (offsets into their document); use DocumentEmbedder otherwise.")
        key = (meta.get(schema.TENANT), meta.get(schema.COLLECTION), meta.get(schema.DOC_ID), meta[schema.CONTENT_HASH])
        groups.setdefault(key, []).append(unit)
    return list(groups.values())


def relabelled(units: list[Document], vectors: Iterable[torch.Tensor], strategy: str) -> list[Document]:
    """The units with their vectors under ``strategy``: ids derive from the strategy, so parents are re-linked."""
    metas = [{**u.meta, schema.STRATEGY: strategy} for u in units]
    new_id = {u.id: schema.unit_id_of(m) for u, m in zip(units, metas, strict=True)}
    out = []
    for unit, meta, vector in zip(units, metas, vectors, strict=True):
        parent = meta.get(schema.PARENT_ID)
        meta[schema.PARENT_ID] = new_id.get(parent, parent) if parent is not None else None
        out.append(replace(unit, id=new_id[unit.id], embedding=vector.tolist(), meta=meta))
    return out


@component
class LateUnitEmbedder:
    """Embeds a ``MultiScaleSplitter``'s units (every level) by late chunking, one pass per document.

    Output units carry ``strategy: late`` (their ids and parent links follow) and their embedding; units that
    already have a vector pass through unchanged.

    Usage:
        >>> units = MultiScaleSplitter().run(documents=[Document(content=text, meta={"doc_id": "a"})])["documents"]
        >>> embedded = LateUnitEmbedder(model="all-MiniLM-L6-v2").run(documents=units)["documents"]
        >>> len(embedded[0].embedding)
        384
    """

    role: ClassVar[Role] = Role.EMBEDDER

    def __init__(self, model: str = "all-MiniLM-L6-v2", local_weight: float = 0.25,
                 local_levels: list[str] | None = None, window_tokens: int | None = None, window_overlap: int = 64,
                 batch_size: int = 16, prompt_name: str | None = "document", device: str = "auto") -> None:
        """
        :param model: a registry model's name, a Hugging Face id in the local cache, or a directory.
        :param local_weight: the share of a unit's vector read alone, for the levels in ``local_levels`` (0 skips
            that pass: about 1.8x faster, a little worse for dense-only retrieval).
        :param local_levels: the levels that get that share (default ``["chunk"]``, the retrieved level).
        :param window_tokens: tokens per window over a long document (default: the model's ``max_seq_length``).
        :param window_overlap: tokens shared by neighbouring windows.
        :param batch_size: windows (and units read alone) per forward pass.
        :param prompt_name: the model's prompt for documents, when it has one.
        :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        """
        check_reading(model, window_tokens, window_overlap, batch_size)
        levels = ["chunk"] if local_levels is None else list(local_levels)
        unknown = [level for level in levels if level not in schema.LEVELS]
        if unknown:
            raise ValueError(f"local_levels {unknown} are not levels; choose from {list(schema.LEVELS)}.")
        self.model = model
        self.local_weight = check_weight("local_weight", local_weight)
        self.local_levels = levels
        self.window_tokens = window_tokens
        self.window_overlap = window_overlap
        self.batch_size = batch_size
        self.prompt_name = prompt_name
        self.device = check_device(device)
        self._encoder: TokenEncoder | None = None

    def warm_up(self) -> None:
        if self._encoder is None:
            loaded = sentence_transformer(self.model, self.device)
            self._encoder = TokenEncoder(loaded, self.window_tokens, document_prompt(loaded, self.prompt_name))

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, model=self.model, local_weight=self.local_weight,
                               local_levels=self.local_levels, window_tokens=self.window_tokens,
                               window_overlap=self.window_overlap, batch_size=self.batch_size,
                               prompt_name=self.prompt_name, device=self.device)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LateUnitEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], local_weight: float | None = None) -> dict[str, list[Document]]:
        """
        :param documents: the units of one or more documents, with their offsets (a MultiScaleSplitter's output).
        :param local_weight: overrides the init value for this run.
        :returns: ``documents``: the units with contextual vectors, relabelled ``strategy: late``.
        """
        weight = self.local_weight if local_weight is None else check_weight("local_weight", local_weight)
        todo = [d for d in documents if d.embedding is None]
        if not todo:
            return {"documents": list(documents)}
        self.warm_up()
        groups = by_document(todo)
        embedded: dict[int, Document] = {}
        # Groups of documents bound memory: their token embeddings are held at once.
        step = self.batch_size * 4
        for begin in range(0, len(groups), step):
            embedded.update(self._embed(groups[begin:begin + step], weight))
        return {"documents": [embedded.get(id(d), d) for d in documents]}

    def _embed(self, groups: list[list[Document]], weight: float) -> dict[int, Document]:
        """Each unit's embedded, relabelled copy, by the ``id()`` of the unit it came from."""
        encoder = self._encoder
        assert encoder is not None
        tokens = [encoder.tokenize(document_text(units)) for units in groups]
        token_embeddings = encoder.document_tokens(tokens, self.window_overlap, self.batch_size)
        pooled = torch.cat([
            mean_pool(embedded, [doc_tokens.token_range(u.meta[schema.START], u.meta[schema.END]) for u in group])
            for group, doc_tokens, embedded in zip(groups, tokens, token_embeddings, strict=True)])
        vectors = encoder.apply_head(pooled).clone()  # a copy outside inference mode, to blend into in place
        units = [u for group in groups for u in group]
        local = [i for i, u in enumerate(units) if u.meta.get(schema.LEVEL) in self.local_levels]
        if weight > 0 and local:
            alone = local_vectors(encoder, [units[i].content or "" for i in local], self.batch_size)
            vectors[local] = blend(vectors[local], alone, weight, encoder.normalizes)
        out: dict[int, Document] = {}
        offset = 0
        for group in groups:
            rows = vectors[offset:offset + len(group)]
            out.update(zip(map(id, group), relabelled(group, rows, STRATEGY), strict=True))
            offset += len(group)
        return out
