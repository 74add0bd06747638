"""Pre-compute per-chunk key/value states: encode a document sequentially once, slice the states per chunk.

Every chunk's states are computed in the context of the shared prompt prefix (the system prompt, as APE
requires) and of the document text before it, so adjacent chunks placed side by side are exactly the
sequential encoding of their span. Keys carry rotary position embeddings; each slice is re-rotated so
its first token sits right after the prefix. That is where the parallel layout puts every chunk
(positions reused), so nothing needs rotating at query time.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

MAX_WINDOW_TOKENS = 2048  # longer documents are encoded in windows of whole chunks (bounded memory/time)


@dataclass
class ChunkKV:
    """One chunk's cached states, keys rotated for positions ``prefix_len .. prefix_len + n - 1``.

    ``keys``/``values``: ``[layers, kv_heads, tokens, head_dim]`` fp32. ``token_spans``: each token's
    character span relative to the chunk text (so sentence spans map onto token positions)."""

    keys: torch.Tensor
    values: torch.Tensor
    token_ids: list[int]
    token_spans: list[tuple[int, int]]

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class PrefixKV:
    ids: list[int]
    keys: torch.Tensor
    values: torch.Tensor


def cache_tensors(cache: DynamicCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked ``[layers, kv_heads, tokens, head_dim]`` keys and values of a batch-1 cache."""
    keys = torch.stack([layer.keys[0] for layer in cache.layers])
    values = torch.stack([layer.values[0] for layer in cache.layers])
    return keys, values


def _rotary_cos_sin(model: PreTrainedModel, positions: torch.Tensor, layer_idx: int) -> tuple:
    """cos/sin of the model's rotary embedding for one layer (layers may use different bases)."""
    rotary = model.model.rotary_emb
    probe = torch.zeros(1, dtype=torch.float32)
    ids = positions.view(1, -1)
    if "layer_type" in inspect.signature(rotary.forward).parameters:
        cos, sin = rotary(probe, ids, model.config.layer_types[layer_idx])
    else:
        cos, sin = rotary(probe, ids)
    # the embedding may fold an attention scaling into cos/sin; a re-rotation must be a pure rotation
    norm = torch.sqrt(cos[..., :1] ** 2 + sin[..., :1] ** 2)
    return cos[0] / norm[0], sin[0] / norm[0]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rerotate_keys(model: PreTrainedModel, keys: torch.Tensor, shift: int) -> torch.Tensor:
    """Keys as if computed ``shift`` positions later (RoPE rotations compose: R(p + s) = R(s) R(p))."""
    if shift == 0:
        return keys
    out = torch.empty_like(keys)
    for layer in range(keys.shape[0]):
        cos, sin = _rotary_cos_sin(model, torch.tensor([shift]), layer)
        out[layer] = keys[layer] * cos + _rotate_half(keys[layer]) * sin
    return out


@torch.inference_mode()
def encode_prefix(model: PreTrainedModel, prefix_ids: list[int]) -> PrefixKV:
    out = model(input_ids=torch.tensor([prefix_ids]), use_cache=True)
    keys, values = cache_tensors(out.past_key_values)
    return PrefixKV(ids=list(prefix_ids), keys=keys, values=values)


def _token_anchors(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """The character each token is filed under: its first non-space character (BPE tokens carry the
    space before a word, which may lie just outside the chunk that holds the word)."""
    anchors = []
    for start, end in offsets:
        anchor = start
        while anchor < end and text[anchor].isspace():
            anchor += 1
        anchors.append(anchor if anchor < end else start)
    return anchors


def assign_tokens(
    text: str, offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> list[list[int]]:
    """Token indices per chunk span; tokens between spans go to the preceding chunk, so adjacent chunks
    partition the document's tokens without gaps."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    starts = [spans[i][0] for i in order]
    groups: list[list[int]] = [[] for _ in spans]
    for token, anchor in enumerate(_token_anchors(text, offsets)):
        slot = bisect.bisect_right(starts, anchor) - 1
        if slot >= 0:
            groups[order[slot]].append(token)
    return groups


def _windows(groups: list[list[int]], limit: int) -> list[list[int]]:
    """Chunk indices (in token order) grouped into windows of at most ``limit`` tokens."""
    windows: list[list[int]] = [[]]
    used = 0
    for index in sorted((i for i, g in enumerate(groups) if g), key=lambda i: groups[i][0]):
        size = len(groups[index])
        if windows[-1] and used + size > limit:
            windows.append([])
            used = 0
        windows[-1].append(index)
        used += size
    return [w for w in windows if w]


@torch.inference_mode()
def encode_document(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prefix: PrefixKV,
    text: str,
    spans: Sequence[tuple[int, int]],
    max_window_tokens: int = MAX_WINDOW_TOKENS,
) -> list[ChunkKV | None]:
    """Each span's states from one sequential pass over the document (per window for long documents).

    Returns one entry per span, ``None`` for a span with no tokens."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    groups = assign_tokens(text, offsets, spans)
    result: list[ChunkKV | None] = [None] * len(spans)
    for window in _windows(groups, max_window_tokens):
        tokens = [t for index in window for t in groups[index]]
        keys, values = _encode_after_prefix(model, prefix, [ids[t] for t in tokens])
        cursor = 0
        for index in window:
            count = len(groups[index])
            # move the slice so its first token sits right after the prefix (the parallel layout)
            sliced_keys = rerotate_keys(model, keys[:, :, cursor : cursor + count], -cursor)
            base = spans[index][0]
            result[index] = ChunkKV(
                keys=sliced_keys.contiguous(),
                values=values[:, :, cursor : cursor + count].contiguous(),
                token_ids=[ids[t] for t in groups[index]],
                token_spans=[(offsets[t][0] - base, offsets[t][1] - base) for t in groups[index]],
            )
            cursor += count
    return result


def _encode_after_prefix(
    model: PreTrainedModel, prefix: PrefixKV, ids: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """States of ``ids`` encoded after the cached prefix (the prefix's own states are dropped)."""
    start = len(prefix.ids)
    pairs = zip(prefix.keys.unsqueeze(1), prefix.values.unsqueeze(1), strict=True)
    cache = DynamicCache(ddp_cache_data=list(pairs))
    out = model(
        input_ids=torch.tensor([ids]),
        position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
        past_key_values=cache,
        use_cache=True,
    )
    keys, values = cache_tensors(out.past_key_values)
    return keys[:, :, start:], values[:, :, start:]
