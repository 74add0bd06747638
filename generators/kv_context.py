"""The cached context of a query: find each chunk's stored states, make missing ones, lay them out.

Shared by the generator component, the ingestion-time pre-compute, calibration and the benchmark, so all
of them read and write the same store entries under the same keys.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from haystack import Document
from transformers import PreTrainedModel

from ragpress.base import model_loading
from ragpress.base.schema import (
    COLLECTION,
    CONTENT_HASH,
    DOC_ID,
    END,
    KEPT_SENTENCES,
    PARTS,
    SENTENCES,
    START,
    TENANT,
    content_hash,
)
from ragpress.generators import kv_quantization, parallel_attention
from ragpress.generators.decoding import Decoded, greedy_decode
from ragpress.generators.kv_cache import ChunkKV, PrefixKV, encode_document, encode_prefix, rerotate_keys
from ragpress.generators.kv_store import (
    CorruptEntry,
    KVBudgetFull,
    KVEntry,
    KVStore,
    decode_entry,
    encode_entry,
    entry_key,
    open_store,
    settings_fingerprint,
)
from ragpress.generators.parallel_attention import ParallelLayout
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT, build_prompt
from ragpress.scoring.sentences import split_sentences

logger = logging.getLogger(__name__)

SPARE_TOKENS = 160


def supports_parallel(model: PreTrainedModel) -> str | None:
    """Why ``model`` cannot use cached parallel states, or None when it can (rotary positions needed)."""
    rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
    if rotary is None:
        return f"{type(model).__name__} has no rotary position embedding that cached keys can be moved with"
    return None


@dataclass
class ParallelContext:
    """Everything a forward pass over the question needs: the cache tensors and the layout."""

    keys: torch.Tensor  # [layers, kv_heads, capacity, head_dim]; the first ``length`` tokens are filled
    values: torch.Tensor
    length: int
    layout: ParallelLayout
    chunk_tokens: list[int]
    masked_tokens: int
    token_ids: list[int] = field(default_factory=list)  # the context's tokens, in cache order
    loaded: int = 0
    encoded: int = 0
    recomputed: int = 0
    stored_bytes: int = 0  # what the chunks' entries take in the store
    _handed_out: bool = False

    def cache(self) -> Any:
        """A cache to run the question on. The first one writes into the context's spare capacity (no
        copy on the latency path); later ones get their own copy so earlier caches stay intact."""
        keys, values = self.keys, self.values
        if self._handed_out:
            keys, values = keys.clone(), values.clone()
        self._handed_out = True
        return parallel_attention.build_cache(keys, values, self.length)


class KVContextBuilder:
    """Per (model, system prompt, quantization, store): stores chunk states and assembles contexts."""

    def __init__(
        self,
        model: str,
        store: KVStore,
        quantization: str = kv_quantization.DEFAULT_QUANTIZATION,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        if quantization not in kv_quantization.QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {kv_quantization.QUANTIZATIONS}")
        self.model_name = model
        self.store = store
        self.quantization = quantization
        self.system_prompt = system_prompt
        self.lm, self.tokenizer = model_loading.causal_lm(model)
        self.prefix_ids = build_prompt(self.tokenizer, "", [], system_prompt).prefix
        self.fingerprint = settings_fingerprint(model, self.prefix_ids, quantization)
        self._prefix: PrefixKV | None = None
        self._lock = threading.Lock()

    @property
    def prefix(self) -> PrefixKV:
        with self._lock:
            if self._prefix is None:
                self._prefix = encode_prefix(self.lm, self.prefix_ids)
            return self._prefix

    # ---- keys -------------------------------------------------------------------------------------
    def document_key(self, digest: str, start: int, end: int) -> str:
        return entry_key(self.fingerprint, digest, start, end)

    def keys_for(self, chunk: Document) -> list[str]:
        """Candidate keys, best first: the slice of its document's pass, then the chunk encoded alone."""
        meta = chunk.meta or {}
        keys = []
        if meta.get(CONTENT_HASH) and meta.get(START) is not None and meta.get(END) is not None:
            keys.append(self.document_key(meta[CONTENT_HASH], int(meta[START]), int(meta[END])))
        text = chunk.content or ""
        keys.append(self.document_key(content_hash(text), 0, len(text)))
        return keys

    # ---- writing ----------------------------------------------------------------------------------
    def to_entry(self, chunk: ChunkKV, doc_id: str) -> KVEntry:
        stored = kv_quantization.quantize(chunk.keys, chunk.values, self.quantization)
        return KVEntry(stored, self.quantization, chunk.token_ids, chunk.token_spans, doc_id)

    def precompute(self, text: str, spans: list[tuple[int, int]], doc_id: str = "", digest: str | None = None,
                   keep_since: float | None = None) -> list[KVEntry | None]:
        """Encode ``text`` once and store one entry per chunk span; returns the entries. With ``keep_since``,
        entries used since then are never evicted to make room: ``KVBudgetFull`` is raised instead."""
        digest = digest or content_hash(text)
        chunks = encode_document(self.lm, self.tokenizer, self.prefix, text, spans)
        entries: list[KVEntry | None] = []
        for (start, end), chunk in zip(spans, chunks, strict=True):
            if chunk is None:
                entries.append(None)
                continue
            entry = self.to_entry(chunk, doc_id)
            if not self.store.put(self.document_key(digest, start, end), encode_entry(entry), doc_id, keep_since):
                raise KVBudgetFull(sum(1 for e in entries if e is not None))
            entries.append(entry)
        return entries

    def encode_alone(self, chunk: Document) -> KVEntry | None:
        """Lazy path: encode a chunk with no stored states by itself and keep the result."""
        text = chunk.content or ""
        return self.precompute(text, [(0, len(text))], doc_id=owner_of(chunk.meta or {}))[0]

    # ---- reading ----------------------------------------------------------------------------------
    def load(self, chunk: Document) -> KVEntry | None:
        """The chunk's stored entry, else one joined from the stored entries of the units it was merged from
        (``meta['parts']``), or None. A corrupt entry is deleted with a warning, never used."""
        for key in self.keys_for(chunk):
            if (entry := self._read(key, chunk.id)) is not None:
                return entry
        return self._join_parts(chunk)

    def _read(self, key: str, chunk_id: str) -> KVEntry | None:
        data = self.store.get(key)
        if data is None:
            return None
        try:
            entry = decode_entry(data)
        except CorruptEntry as error:
            logger.warning("KV entry %s for chunk %s is corrupt (%s); deleted, will re-encode.",
                           key[:12], chunk_id, error)
            self.store.delete(key)
            return None
        return entry if entry.quantization == self.quantization and entry.n_tokens > 0 else None

    def _join_parts(self, chunk: Document) -> KVEntry | None:
        """A merged unit's states: its parts' entries one after another, each part's keys moved to continue the
        positions of the part before. The parts came from one pass over the document, so the join is the
        document's own encoding of the merged span."""
        meta = chunk.meta or {}
        if not meta.get(PARTS) or not meta.get(CONTENT_HASH) or meta.get(START) is None:
            return None
        pieces = []
        for start, end in meta[PARTS]:
            entry = self._read(self.document_key(meta[CONTENT_HASH], int(start), int(end)), chunk.id)
            if entry is None:
                return None
            pieces.append((entry, int(start) - int(meta[START])))
        token_ids, spans = [], []
        for entry, shift in pieces:
            token_ids += entry.token_ids
            spans += [(start + shift, end + shift) for start, end in entry.token_spans]
        # the parts stay quantized: assemble decodes each into place, as it does any entry
        return KVEntry({}, self.quantization, token_ids, spans, pieces[0][0].doc_id, parts=[e for e, _ in pieces])

    def assemble(self, chunks: list[Document], entries: list[KVEntry], temperature: float,
                 scale: float, prune: bool = True, sequential: bool = False) -> ParallelContext:
        """Prefix and chunk states side by side, every chunk at the positions right after the prefix.

        ``sequential`` lays the chunks one after another instead (keys re-rotated to their place in the
        concatenation, no APE corrections): the layout CacheBlend recomputes tokens in."""
        prefix = self.prefix
        start = len(prefix.ids)
        total = start + sum(e.n_tokens for e in entries)
        layers, heads, _, dim = prefix.keys.shape
        # spare capacity for the question and the answer, so decoding appends without copying
        keys = torch.empty(layers, heads, total + SPARE_TOKENS, dim)
        values = torch.empty(layers, heads, total + SPARE_TOKENS, dim)
        keys[:, :, :start] = prefix.keys
        values[:, :, :start] = prefix.values
        positions, keep = [torch.arange(start)], []
        cursor = start
        for chunk, entry in zip(chunks, entries, strict=True):
            end = cursor + entry.n_tokens
            first = cursor if sequential else start
            offset = cursor
            for part in entry.parts or [entry]:  # a joined entry's parts continue each other's positions
                part_end = offset + part.n_tokens
                kv_quantization.dequantize_into(part.tensors, part.quantization, keys[:, :, offset:part_end],
                                                values[:, :, offset:part_end])
                if (shift := first - start + offset - cursor) != 0:
                    keys[:, :, offset:part_end] = rerotate_keys(self.lm, keys[:, :, offset:part_end], shift)
                offset = part_end
            positions.append(torch.arange(first, first + entry.n_tokens))
            everything = torch.ones(entry.n_tokens, dtype=torch.bool)
            keep.append(token_keep_mask(chunk, entry) if prune else everything)
            cursor = end
        context_keep = torch.cat(keep) if keep else torch.ones(0, dtype=torch.bool)
        masked = int((~context_keep).sum())
        key_positions = torch.cat(positions)
        layout = ParallelLayout(
            prefix_len=start,
            key_positions=key_positions,
            question_position=int(key_positions.max()) + 1 if key_positions.numel() else 0,
            temperature=1.0 if sequential else temperature,
            scale=1.0 if sequential else scale,
            context_keep=context_keep if masked else None,
        )
        token_ids = [t for e in entries for t in e.token_ids]
        return ParallelContext(keys, values, total, layout, [e.n_tokens for e in entries], masked, token_ids,
                               stored_bytes=sum(e.stored_bytes for e in entries))


    # ---- answering --------------------------------------------------------------------------------
    @torch.inference_mode()
    def answer(self, context: ParallelContext, suffix: list[int], max_new_tokens: int, started: float,
               on_text: Callable[[str], None] | None = None) -> Decoded:
        """Prefill the question (``suffix``) over the laid-out context and decode greedily."""
        position = context.layout.question_position
        kwargs = {"ape_layout": context.layout}
        out = self.lm(
            input_ids=torch.tensor([suffix]),
            position_ids=torch.arange(position, position + len(suffix)).unsqueeze(0),
            past_key_values=context.cache(),
            use_cache=True,
            logits_to_keep=1,  # the question's other positions' vocabulary logits are never read
            **kwargs,
        )
        return greedy_decode(self.lm, self.tokenizer, out.past_key_values, out.logits[0, -1], position + len(suffix),
                             max_new_tokens, started, on_text, kwargs)


def kv_owner(tenant: str, collection: str, doc_id: str) -> str:
    """The name a document's entries are registered under: scoped, so deleting a document in one
    collection never frees the states of a same-named document in another."""
    return "\x1f".join((tenant, collection, doc_id))


def owner_of(meta: dict[str, Any]) -> str:
    if meta.get(TENANT) is not None and meta.get(COLLECTION) is not None:
        return kv_owner(str(meta[TENANT]), str(meta[COLLECTION]), str(meta.get(DOC_ID, "")))
    return str(meta.get(DOC_ID, ""))


def token_keep_mask(chunk: Document, entry: KVEntry) -> torch.Tensor:
    """False for tokens inside sentences the pruner dropped (``meta['kept_sentences']``)."""
    meta = chunk.meta or {}
    keep = torch.ones(entry.n_tokens, dtype=torch.bool)
    kept = meta.get(KEPT_SENTENCES)
    if kept is None:
        return keep
    # the same spans the pruner indexed: the chunker's, else the shared splitter's
    sentences = meta.get(SENTENCES) or split_sentences(chunk.content or "")
    kept_set = {int(i) for i in kept}
    dropped = [tuple(span) for i, span in enumerate(sentences) if i not in kept_set]
    for index, (start, end) in enumerate(entry.token_spans):
        # a token belongs to the sentence holding its first non-space character
        anchor = _anchor(chunk.content or "", start, end)
        if any(s <= anchor < e for s, e in dropped):
            keep[index] = False
    return keep


def _anchor(text: str, start: int, end: int) -> int:
    anchor = max(start, 0)
    while anchor < min(end, len(text)) and text[anchor].isspace():
        anchor += 1
    return anchor


# Each builder holds its prefix's KV states; tenants' pipelines can name many configurations, so only the most
# recently used few stay in memory (an evicted one recomputes its short prefix when next used).
MAX_BUILDERS = 8
_builders: OrderedDict[str, KVContextBuilder] = OrderedDict()
_builders_lock = threading.Lock()


def builder_for(model: str, store: dict[str, Any] | None, quantization: str,
                system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> KVContextBuilder:
    """One builder per configuration and process (the prefix states are computed once while it is kept)."""
    key = json.dumps([model, store, quantization, system_prompt], sort_keys=True, default=str)
    with _builders_lock:
        if key in _builders:
            _builders.move_to_end(key)
        else:
            _builders[key] = KVContextBuilder(model, open_store(store), quantization, system_prompt)
            while len(_builders) > MAX_BUILDERS:
                _builders.popitem(last=False)
        return _builders[key]


def precompute_document_kv(
    text: str,
    chunks: list[Document] | list[tuple[int, int]],
    doc_id: str = "",
    model: str = "SmolLM2-135M-Instruct",
    store: dict[str, Any] | None = None,
    quantization: str = kv_quantization.DEFAULT_QUANTIZATION,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    digest: str | None = None,
    keep_since: float | None = None,
) -> int:
    """Encode a document once and store every chunk's states; returns the number of entries stored.

    Call it from the ingestion task (eager) or from a task queued on a cache miss (lazy). ``chunks`` are
    the indexed chunk Documents (their ``meta['start']/['end']`` locate them) or plain ``(start, end)``
    character spans. Use the same ``model``/``store``/``quantization``/``system_prompt`` as the generator.
    ``digest`` is the chunks' ``meta['content_hash']`` when ``text`` is a converted form of the submitted
    text (the generator looks entries up by that hash); it defaults to the hash of ``text``. ``keep_since``
    (a Unix time, e.g. the ingestion job's start) protects entries used since then from eviction: when the
    store's budget holds nothing older, ``KVBudgetFull`` says how many of this document's entries were stored.
    """
    spans = [
        (int(c.meta[START]), int(c.meta[END])) if isinstance(c, Document) else (int(c[0]), int(c[1]))
        for c in chunks
    ]
    builder = builder_for(model, store, quantization, system_prompt)
    if supports_parallel(builder.lm) is not None:
        return 0
    entries = builder.precompute(text, spans, doc_id=doc_id, digest=digest or content_hash(text), keep_since=keep_since)
    return sum(1 for e in entries if e is not None)


def invalidate_document_kv(doc_id: str, store: dict[str, Any] | None = None) -> int:
    """Drop every stored entry of a document (call when it is deleted or replaced); returns how many.

    Entries are content-addressed, so a replaced document's new text never hits old entries anyway;
    this frees their bytes at once instead of waiting for eviction."""
    return open_store(store).delete_document(doc_id)
