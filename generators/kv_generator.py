"""Answer from cached, compressed chunk KV states encoded in parallel (APE), prefilling only the question."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import StreamingChunk

from ragpress.base.devices import check_device
from ragpress.base.roles import Role
from ragpress.base.schema import DOC_ID
from ragpress.generators import kv_blend, kv_quantization, parallel_attention
from ragpress.generators.kv_context import (
    KVContextBuilder,
    ParallelContext,
    builder_for,
    supports_parallel,
)
from ragpress.generators.kv_store import KVEntry, KVStore
from ragpress.generators.local_generator import LocalGenerator, _stream_to, abstention_result, says_no_answer
from ragpress.generators.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    build_prompt,
    new_token_limit,
    order_for_generation,
    passage_text,
)

logger = logging.getLogger(__name__)
CPU_DEVICES = ("auto", "cpu")

DEFAULT_TEMPERATURE = 0.9  # APE's starting point, for a model with no calibration stored or shipped
DEFAULT_SCALE = 0.9
ON_MISS = ("encode", "prefill")
# Shipped so a fresh install of a bundled model starts calibrated. Picked by generated answers through the
# components (`python -m ragpress.bench.kv_answers`, 400 dev questions of XQuAD, SQuAD and HotpotQA): the KL
# objective's S = 0.5 kept the teacher-forced distributions closest to sequential prefill's, but S = 1.0 answered
# better (answer recall 106% of S = 0.5's pooled); see docs/benchmarks.md.
SHIPPED_CALIBRATIONS = {
    ("SmolLM2-135M-Instruct", DEFAULT_SYSTEM_PROMPT): {"temperature": 0.7, "scale": 1.0},
}


def calibration_name(model: str, system_prompt: str) -> str:
    return f"calibration|{model}|{system_prompt}"


def calibration_for(store: KVStore, model: str, system_prompt: str) -> dict[str, Any]:
    """The store's calibration for the model and prompt, else the shipped one, else {} (APE's defaults)."""
    stored = store.get_settings(calibration_name(model, system_prompt))
    return stored or SHIPPED_CALIBRATIONS.get((model, system_prompt), {})


def _check_corrections(temperature: float | None, scale: float | None) -> None:
    for name, value in (("temperature", temperature), ("scale", scale)):
        if value is not None and not 0.0 < value <= 4.0:
            raise ValueError(f"{name} must be in (0, 4].")


def _check_share(share: float) -> float:
    if not 0.0 <= share <= 1.0:
        raise ValueError("blend_share must be in [0, 1] (the share of context tokens CacheBlend recomputes).")
    return share


@component
class KVCacheGenerator:
    """Generates from the retrieved chunks' cached KV states instead of re-reading them.

    Each chunk's states (pre-computed at ingestion by ``precompute_document_kv`` or encoded on first use)
    are loaded from the KV store, placed side by side after the cached system prompt with positions
    reused, and the question alone is prefilled; attention over the context is corrected with APE's
    temperature and scale (calibrated per model by ``python -m ragpress.training.kv_calibration``). Sentences
    the pruner dropped (``meta['kept_sentences']``) are masked out of attention, not re-encoded. With
    ``blend_share > 0`` the chunks are laid out one after another instead and CacheBlend recomputes that
    share of their tokens across chunks (closer to sequential reading, several times slower to the first
    token than the parallel path; see docs/benchmarks.md).

    Falls back to sequential prefill (``LocalGenerator``, with a warning) when the model cannot use moved
    rotary keys, or when a chunk has no usable entry and ``on_miss="prefill"``; with ``on_miss="encode"``
    (lazy pre-compute) a missing or corrupt entry is re-encoded and stored.

    Usage:
        >>> gen = KVCacheGenerator(model="SmolLM2-135M-Instruct", quantization="int4",
        ...                        store={"backend": "local", "path": "/tmp/kv"})
        >>> gen.warm_up()
        >>> gen.run(query="When was the tower finished?", documents=[Document(content="...in 1889.")])
        {'replies': ['It was finished in 1889.'], 'meta': [{'mode': 'parallel', 'ttft_ms': ..., ...}]}
    """

    role: ClassVar[Role] = Role.GENERATOR

    def __init__(
        self,
        model: str = "SmolLM2-135M-Instruct",
        store: dict[str, Any] | None = None,
        quantization: str = kv_quantization.DEFAULT_QUANTIZATION,
        temperature: float | None = None,
        scale: float | None = None,
        on_miss: str = "encode",
        blend_share: float = 0.0,
        max_new_tokens: int = 64,
        max_context_tokens: int = 4096,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        device: str = "auto",
    ) -> None:
        if check_device(device) not in CPU_DEVICES:
            # cached states are stored and assembled as CPU tensors; a GPU path would move every entry
            raise ValueError("the KV generator runs on the CPU in this version: use device auto or cpu.")
        if quantization not in kv_quantization.QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {kv_quantization.QUANTIZATIONS}.")
        if on_miss not in ON_MISS:
            raise ValueError(f"on_miss must be one of {ON_MISS}.")
        _check_corrections(temperature, scale)
        _check_share(blend_share)
        if store is not None and store.get("backend", "local") not in ("local", "redis"):
            raise ValueError("store.backend must be 'local' or 'redis'.")
        # the fallback is the sequential baseline itself (it also validates the shared parameters)
        self._sequential = LocalGenerator(model, max_new_tokens, max_context_tokens, system_prompt, device="cpu")
        self.device = device
        self.model = model
        self.store = store
        self.quantization = quantization
        self.temperature = temperature
        self.scale = scale
        self.on_miss = on_miss
        self.blend_share = blend_share
        self.max_new_tokens = max_new_tokens
        self.max_context_tokens = max_context_tokens
        self.system_prompt = system_prompt
        self._builder: KVContextBuilder | None = None
        self._unsupported: str | None = None

    def warm_up(self) -> None:
        if self._builder is not None:
            return
        self._sequential.warm_up()
        self._builder = builder_for(self.model, self.store, self.quantization, self.system_prompt)
        self._unsupported = supports_parallel(self._builder.lm)
        if self._unsupported is None:
            parallel_attention.enable(self._builder.lm)
        else:
            logger.warning("KVCacheGenerator: %s; answering by sequential prefill.", self._unsupported)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            store=self.store,
            quantization=self.quantization,
            temperature=self.temperature,
            scale=self.scale,
            on_miss=self.on_miss,
            blend_share=self.blend_share,
            max_new_tokens=self.max_new_tokens,
            max_context_tokens=self.max_context_tokens,
            system_prompt=self.system_prompt,
            device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KVCacheGenerator:
        return default_from_dict(cls, data)

    def corrections(self, temperature: float | None = None,
                    scale: float | None = None) -> tuple[float, float]:
        """T and S: runtime value, else init value, else the calibration, else APE's 0.9/0.9."""
        assert self._builder is not None
        stored = calibration_for(self._builder.store, self.model, self.system_prompt)
        t = temperature or self.temperature or stored.get("temperature") or DEFAULT_TEMPERATURE
        s = scale or self.scale or stored.get("scale") or DEFAULT_SCALE
        return float(t), float(s)

    @component.output_types(replies=list[str], meta=list[dict[str, Any]])
    def run(
        self,
        *,
        query: str,
        documents: list[Document] | None = None,
        max_new_tokens: int | None = None,
        streaming_callback: Callable[[StreamingChunk], None] | None = None,
        temperature: float | None = None,
        scale: float | None = None,
        blend_share: float | None = None,
    ) -> dict[str, Any]:
        """
        :param query: the question.
        :param documents: the chunks to answer from, most relevant first; their cached states are loaded.
        :param max_new_tokens: overrides the init value for this run.
        :param streaming_callback: called with each new piece of the answer.
        :param temperature: overrides the init value (or the calibration) for this run.
        :param scale: overrides the init value (or the calibration) for this run.
        :param blend_share: overrides the init value for this run.
        :returns: ``replies`` (one answer) and ``meta`` (time to first token, abstention, chunks loaded and
            encoded, prefilled tokens).
        """
        share = _check_share(self.blend_share if blend_share is None else blend_share)
        _check_corrections(temperature, scale)  # a run's override is held to the init values' range
        max_new_tokens = new_token_limit(max_new_tokens, self.max_new_tokens)
        documents = [d for d in (documents or []) if passage_text(d).strip()]
        if not documents:
            return abstention_result(streaming_callback)
        self.warm_up()
        if self._unsupported is not None:
            return self._fallback(query, documents, max_new_tokens, streaming_callback, self._unsupported)
        started = time.perf_counter()
        chunks, entries, encoded = self._entries(documents)
        if entries is None:
            result = self._fallback(query, documents, max_new_tokens, streaming_callback,
                                    "a chunk has no usable cached KV states")
            missing = [d for d in documents if self._builder.load(d) is None]
            meta = result["meta"][0]
            # the caller can queue the lazy pre-compute for exactly these documents
            meta["kv_missing_doc_ids"] = sorted({str((d.meta or {}).get(DOC_ID, d.id)) for d in missing})
            meta["kv_chunks_loaded"], meta["kv_chunks_missing"] = len(documents) - len(missing), len(missing)
            return result
        t, s = self.corrections(temperature, scale)
        assert self._builder is not None
        context = self._builder.assemble(chunks, entries, t, s, sequential=share > 0)
        context.loaded, context.encoded = len(entries) - encoded, encoded
        context.recomputed = kv_blend.recompute(self._builder.lm, context, share)
        return self._answer(query, context, started, max_new_tokens, streaming_callback)

    def _entries(self, documents: list[Document]) -> tuple[list[Document], list[KVEntry] | None, int]:
        """Chunks within the token budget (most relevant first, then generation order) and their entries."""
        assert self._builder is not None
        chunks: list[Document] = []
        entries: list[KVEntry] = []
        encoded = used = 0
        for document in documents:
            entry = self._builder.load(document)
            if entry is None and self.on_miss == "prefill":
                return [], None, 0
            if entry is None:
                entry = self._builder.encode_alone(document)
                encoded += 1
                if entry is None:
                    continue
            if chunks and used + entry.n_tokens > self.max_context_tokens:
                break
            chunks.append(document)
            entries.append(entry)
            used += entry.n_tokens
        # most relevant last, as in the sequential prompt (APE's merge is order-free; the fallback is not)
        return order_for_generation(chunks), list(reversed(entries)), encoded

    def _answer(self, query: str, context: ParallelContext, started: float, max_new_tokens: int,
                streaming_callback: Callable[[StreamingChunk], None] | None) -> dict[str, Any]:
        assert self._builder is not None
        suffix = build_prompt(self._builder.tokenizer, query, [], self.system_prompt).suffix
        decoded = self._builder.answer(context, suffix, max_new_tokens, started, _stream_to(streaming_callback))
        meta = {
            "model": self.model,
            "mode": "blend" if context.recomputed else "parallel",
            "prompt_tokens": len(self._builder.prefix_ids) + sum(context.chunk_tokens) + len(suffix),
            "prefilled_tokens": len(suffix),
            "completion_tokens": len(decoded.token_ids),
            "ttft_ms": decoded.ttft_s * 1000,
            "finish_reason": decoded.finish_reason,
            "abstained": says_no_answer(decoded.text),
            "kv_chunks_loaded": context.loaded,
            "kv_chunks_encoded": context.encoded,
            "kv_masked_tokens": context.masked_tokens,
            "kv_recomputed_tokens": context.recomputed,
            "kv_stored_bytes": context.stored_bytes,
            "kv_context_tokens": sum(context.chunk_tokens),
            "kv_quantization": self.quantization,
            "temperature": context.layout.temperature,
            "scale": context.layout.scale,
        }
        return {"replies": [decoded.text], "meta": [meta]}

    def _fallback(self, query: str, documents: list[Document], max_new_tokens: int,
                  streaming_callback: Callable[[StreamingChunk], None] | None, why: str) -> dict[str, Any]:
        logger.warning("KVCacheGenerator falls back to sequential prefill: %s.", why)
        result = self._sequential.run(query=query, documents=documents, max_new_tokens=max_new_tokens,
                                      streaming_callback=streaming_callback)
        result["meta"][0]["fallback_reason"] = why
        return result
