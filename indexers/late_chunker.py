"""Late chunking: embed the whole document once, then pool each chunk's vector out of its token embeddings.

A chunk embedded on its own loses what its document says around it ("it", "the method", "this city"). Here
the embedder reads the whole document (or long overlapping windows of it when it exceeds the model's
context), and each chunk's vector is the mean of the token embeddings inside its character span, passed
through the model's own head after pooling (Dense layers, Normalize). Chunk spans come from the baseline
``SentenceChunker`` so fixed and late chunking cut documents identically and differ only in the vectors.

Context has a price: the chunks of one document get similar vectors, so a query matching one sentence ranks
that chunk less sharply against its siblings. ``local_weight`` mixes back in a share of the chunk's vector
read alone (its own text, no context), so a chunk keeps its local signal as well as its document's meaning.

``TokenEncoder`` (token-level access to any sentence-transformers model) is shared with the situated chunker.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.devices import check_device
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role
from ragpress.indexers.sentence_chunker import SentenceChunker

Span = tuple[int, int]


@dataclass(frozen=True)
class Tokens:
    """A text's tokens without special tokens: ids and character offsets into the text."""

    ids: list[int]
    offsets: list[Span]

    def token_range(self, start: int, end: int) -> Span:
        """Indices ``[i, j)`` of the tokens that start inside the character span ``[start, end)``."""
        starts = [a for a, _ in self.offsets]
        return bisect_left(starts, start), bisect_left(starts, end)


def plan_windows(n_tokens: int, capacity: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cover ``n_tokens`` with windows of at most ``capacity`` tokens that overlap by ``overlap``.

    Returns ``(start, end, core_start, core_end)`` per window. Each token takes its embedding from the one
    window whose core holds it; cores split the overlaps in half so a token is read with as much context on
    both sides as the windows allow."""
    if n_tokens <= capacity:
        return [(0, n_tokens, 0, n_tokens)]
    stride = capacity - overlap
    starts = [*range(0, n_tokens - capacity, stride), n_tokens - capacity]
    windows = []
    for k, start in enumerate(starts):
        core_start = 0 if k == 0 else (windows[-1][3])
        core_end = n_tokens if k == len(starts) - 1 else (start + capacity + starts[k + 1]) // 2
        windows.append((start, start + capacity, core_start, core_end))
    return windows


class TokenEncoder:
    """Token embeddings from a sentence-transformers model, and its head applied to pooled vectors.

    Works with any model whose first module is a transformer with a fast tokenizer: it reads the special
    tokens the tokenizer adds, the model's ``max_seq_length`` and the modules after its ``Pooling``."""

    def __init__(self, model: Any, window_tokens: int | None = None, prompt: str = "") -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("late/situated chunking needs a fast tokenizer (character offsets).")
        self.prefix, self.suffix = _special_affixes(self.tokenizer)
        self.prompt = prompt
        self.prompt_ids = self.tokenize(prompt).ids if prompt else []
        limit = min(window_tokens or model.max_seq_length, _max_positions(model))
        self.capacity = limit - len(self.prefix) - len(self.suffix) - len(self.prompt_ids)
        if self.capacity < 16:
            raise ValueError(f"a window of {limit} tokens leaves too little room for text.")
        names = [type(module).__name__ for module in model]
        after = names.index("Pooling") + 1 if "Pooling" in names else len(names)
        self.head = [model[i] for i in range(after, len(names))]

    def tokenize(self, text: str) -> Tokens:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return Tokens(list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]])

    def encode(self, sequences: list[list[int]], batch_size: int) -> list[torch.Tensor]:
        """Contextual token embeddings (one ``[len, dim]`` tensor per sequence, special and prompt tokens
        removed). Sequences must fit ``capacity``; shorter ones are batched together by length."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        lead = len(self.prefix) + len(self.prompt_ids)
        for begin in range(0, len(order), batch_size):
            batch = [sequences[i] for i in order[begin:begin + batch_size]]
            embeddings = self._forward([self.prefix + self.prompt_ids + ids + self.suffix for ids in batch])
            for row, index in enumerate(order[begin:begin + batch_size]):
                out[index] = embeddings[row, lead:lead + len(sequences[index])]
        return out

    def document_tokens(self, tokens: list[Tokens], overlap: int, batch_size: int) -> list[torch.Tensor]:
        """Token embeddings of whole documents, read through overlapping windows where they are too long."""
        plans = [plan_windows(len(t.ids), self.capacity, overlap) for t in tokens]
        pieces = [t.ids[s:e] for t, plan in zip(tokens, plans, strict=True) for s, e, _, _ in plan]
        encoded = iter(self.encode(pieces, batch_size))
        documents = []
        for plan in plans:
            parts = [next(encoded)[cs - s:ce - s] for s, _, cs, ce in plan]
            documents.append(torch.cat(parts) if parts else torch.empty(0, self.dimension))
        return documents

    def apply_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """The model's own modules after pooling (Dense, Normalize, ...) on pooled token embeddings."""
        features: dict[str, Any] = {"sentence_embedding": pooled}
        with torch.inference_mode():
            for module in self.head:
                features = module(features)
        return features["sentence_embedding"]

    @property
    def normalizes(self) -> bool:
        """Whether the model's head ends in unit-length vectors (blends are renormalized then)."""
        return any(type(m).__name__ == "Normalize" for m in self.head)

    @property
    def dimension(self) -> int:
        first = self.model[0]
        getter = getattr(first, "get_embedding_dimension", None) or first.get_word_embedding_dimension
        return int(getter())

    def _forward(self, batch: list[list[int]]) -> torch.Tensor:
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id or 0
        device = self.model.device  # pooling and blending stay on the CPU in float32
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
        with torch.inference_mode():
            features = self.model[0]({"input_ids": input_ids, "attention_mask": mask})
        return features["token_embeddings"].float().cpu()


def blend(base: torch.Tensor, other: torch.Tensor, weight: float, normalize: bool = True) -> torch.Tensor:
    """Rows of ``(1 - weight) * base + weight * other``, both taken at unit length so neither dominates by
    its norm; renormalized when the model's head normalizes. ``weight == 0`` returns ``base`` untouched."""
    if weight == 0.0:
        return base
    unit = torch.nn.functional.normalize
    mixed = (1.0 - weight) * unit(base, dim=-1) + weight * unit(other, dim=-1)
    return unit(mixed, dim=-1) if normalize else mixed


def local_vectors(encoder: TokenEncoder, texts: list[str], batch_size: int) -> torch.Tensor:
    """Each chunk's vector read alone, exactly as the model embeds a text (its own pooling over its special
    tokens too): the fixed-size view of the chunk."""
    if not texts:
        return torch.empty(0, encoder.dimension)
    return encoder.model.encode(texts, batch_size=batch_size, prompt=encoder.prompt or None, convert_to_tensor=True,
                                show_progress_bar=False).cpu()


def mean_pool(token_embeddings: torch.Tensor, ranges: list[Span]) -> torch.Tensor:
    """Mean of the token embeddings in each ``[i, j)`` range (empty ranges give zero vectors)."""
    rows = [token_embeddings[i:j].mean(0) if j > i else token_embeddings.new_zeros(token_embeddings.shape[1])
            for i, j in ranges]
    return torch.stack(rows)


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS]/[SEP], <bos>/<eos>, ...)."""
    encoded = tokenizer("x", add_special_tokens=True, return_offsets_mapping=True)
    content = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if b > a]
    ids = list(encoded["input_ids"])
    return ids[:content[0]], ids[content[-1] + 1:]


def _max_positions(model: Any) -> int:
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    return int(getattr(config, "max_position_embeddings", None) or model.max_seq_length)


def document_prompt(model: Any, prompt_name: str | None) -> str:
    prompts = getattr(model, "prompts", None) or {}
    return prompts.get(prompt_name, "") if prompt_name else ""


@dataclass(frozen=True)
class LateParts:
    """Chunks (without vectors), their late vectors and, when asked for, their vectors read alone."""

    chunks: list[Document]
    late_vectors: torch.Tensor
    local_vectors: torch.Tensor | None


@component
class LateChunker:
    """Sentence-packed chunks of at most ``max_tokens`` tokens, embedded by late chunking.

    Documents longer than the model's window (``window_tokens``, default its ``max_seq_length``) are read
    through windows overlapping by ``window_overlap`` tokens. ``local_weight`` is the share of each chunk's
    vector read alone mixed into its late vector (one more, short pass per chunk); its default is the weight
    bench/chunking.py picked on its dev split. Output chunks carry ``strategy: late`` and their embedding;
    the ``DocumentEmbedder`` downstream leaves them as they are.

    Usage:
        >>> chunker = LateChunker(model="all-MiniLM-L6-v2", max_tokens=64)
        >>> chunks = chunker.run(documents=[Document(content=text, meta={"doc_id": "a"})])["documents"]
        >>> len(chunks[0].embedding)
        384
    """

    role: ClassVar[Role] = Role.CHUNKER

    def __init__(self, model: str = "all-MiniLM-L6-v2", max_tokens: int = 128, overlap_sentences: int = 0,
                 window_tokens: int | None = None, window_overlap: int = 64, batch_size: int = 16,
                 prompt_name: str | None = "document", local_weight: float = 0.25, device: str = "auto") -> None:
        check_reading(model, window_tokens, window_overlap, batch_size)
        check_weight("local_weight", local_weight)
        self.device = check_device(device)
        self.model = model
        self.max_tokens = max_tokens
        self.overlap_sentences = overlap_sentences
        self.window_tokens = window_tokens
        self.window_overlap = window_overlap
        self.batch_size = batch_size
        self.prompt_name = prompt_name
        self.local_weight = local_weight
        # Validates max_tokens/overlap_sentences and cuts exactly as the baseline does.
        self._splitter = SentenceChunker(max_tokens, overlap_sentences, tokenizer_model=model)
        self._encoder: TokenEncoder | None = None

    def warm_up(self) -> None:
        if self._encoder is None:
            loaded = sentence_transformer(self.model, self.device)
            prompt = document_prompt(loaded, self.prompt_name)
            self._encoder = TokenEncoder(loaded, self.window_tokens, prompt)
            self._splitter.warm_up()

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, model=self.model, max_tokens=self.max_tokens,
                               overlap_sentences=self.overlap_sentences, window_tokens=self.window_tokens,
                               window_overlap=self.window_overlap, batch_size=self.batch_size,
                               prompt_name=self.prompt_name, local_weight=self.local_weight, device=self.device)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LateChunker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], max_tokens: int | None = None,
            local_weight: float | None = None) -> dict[str, list[Document]]:
        """
        :param documents: whole documents, each read once (in overlapping windows when long).
        :param max_tokens: overrides the init value for this run.
        :param local_weight: overrides the init value for this run.
        :returns: ``documents``: the chunks with their late-pooled embeddings.
        """
        weight = self.local_weight if local_weight is None else check_weight("local_weight", local_weight)
        parts = self.parts(documents, max_tokens, with_local=weight > 0)
        vectors = parts.late_vectors
        if parts.local_vectors is not None:
            assert self._encoder is not None
            vectors = blend(vectors, parts.local_vectors, weight, self._encoder.normalizes)
        return {"documents": with_vectors(parts.chunks, vectors, "late")}

    def parts(self, documents: list[Document], max_tokens: int | None = None, with_local: bool = True) -> LateParts:
        """Chunk and encode, keeping late and local vectors apart (the benchmark mixes them at several weights)."""
        self.warm_up()
        chunks: list[Document] = []
        late: list[torch.Tensor] = []
        local: list[torch.Tensor] = []
        # Groups bound memory: token embeddings of a group's documents are held at once.
        for begin in range(0, len(documents), self.batch_size * 4):
            group = self._embed_group(documents[begin:begin + self.batch_size * 4], max_tokens or self.max_tokens,
                                      with_local)
            chunks.extend(group.chunks)
            late.append(group.late_vectors)
            if group.local_vectors is not None:
                local.append(group.local_vectors)
        empty = torch.empty(0, self._encoder.dimension if self._encoder else 0)
        return LateParts(chunks, torch.cat(late) if late else empty,
                         (torch.cat(local) if local else empty) if with_local else None)

    def _embed_group(self, documents: list[Document], max_tokens: int, with_local: bool) -> LateParts:
        encoder = self._encoder
        assert encoder is not None
        planned = [self._splitter.run(documents=[d], max_tokens=max_tokens)["documents"] for d in documents]
        kept = [i for i, chunks in enumerate(planned) if chunks]
        tokens = [encoder.tokenize(documents[i].content or "") for i in kept]
        embeddings = encoder.document_tokens(tokens, self.window_overlap, self.batch_size)
        chunks: list[Document] = []
        late: list[torch.Tensor] = []
        for index, doc_tokens, token_embeddings in zip(kept, tokens, embeddings, strict=True):
            ranges = [doc_tokens.token_range(c.meta[schema.START], c.meta[schema.END]) for c in planned[index]]
            late.append(encoder.apply_head(mean_pool(token_embeddings, ranges)))
            chunks.extend(planned[index])
        local = local_vectors(encoder, [c.content or "" for c in chunks], self.batch_size) if with_local else None
        return LateParts(chunks, torch.cat(late) if late else torch.empty(0, encoder.dimension), local)


def check_reading(model: str, window_tokens: int | None, window_overlap: int, batch_size: int) -> None:
    """Validates how a late-chunking component reads documents: its model, windows and batches."""
    if not model:
        raise ValueError("model must name a registry model, a Hugging Face id or a directory.")
    if window_tokens is not None and window_tokens < 32:
        raise ValueError("window_tokens must be at least 32.")
    if window_overlap < 0 or (window_tokens is not None and window_overlap >= window_tokens // 2):
        raise ValueError("window_overlap must be between 0 and half of window_tokens.")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")


def check_weight(name: str, weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1.")
    return weight


def with_vectors(chunks: list[Document], vectors: torch.Tensor, strategy: str) -> list[Document]:
    """The chunks with their vectors, re-labelled (and so re-identified) as units of ``strategy``."""
    out = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        meta = {**chunk.meta, schema.STRATEGY: strategy}
        out.append(replace(chunk, id=schema.unit_id_of(meta), embedding=vector.tolist(), meta=meta))
    return out
