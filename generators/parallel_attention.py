"""Parallel context encoding with APE's corrections, as a custom transformers attention function.

Layout of the cache the question sees: ``[prefix | chunk 1 | chunk 2 | ... | question and answer]``. Every
chunk was encoded alone after the shared prefix, so all chunks reuse the positions right after it; the
question starts after the longest chunk. Attention from the question (and every generated token) is
computed in three parts (prefix, context, question) merged by their log-sum-exp, the context part with
APE's attention temperature ``T`` (sharper over many parallel tokens) and scaling factor ``S`` (its total
weight, which parallel encoding inflates). ``T = S = 1`` is plain attention: naive parallel encoding.

The same function also drops context positions from attention (pruning by masking) and applies a
sliding window by *position* rather than cache index, which is what makes Gemma-3-style sliding layers
work with reused positions. Without an ``ape_layout`` keyword it is exactly transformers' SDPA path, so
a model switched to it serves ordinary (sequential) calls unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "ragpress_parallel"


@dataclass
class ParallelLayout:
    """Where the prefix, the parallel context and the question sit in the cache, and the corrections."""

    prefix_len: int
    key_positions: torch.Tensor  # position of every prefix and context key (the cache's first entries)
    question_position: int  # position of the first question token
    temperature: float = 1.0
    scale: float = 1.0
    context_keep: torch.Tensor | None = None  # bool per context key; False = pruned, never attended
    # positions of the tokens after the fixed keys when they are not ``question_position, +1, ...``
    # (CacheBlend recomputes scattered context tokens; see generators/kv_blend.py)
    tail_positions: torch.Tensor | None = None
    _masks: dict[tuple[int, int, int | None], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def context_len(self) -> int:
        return int(self.key_positions.numel()) - self.prefix_len

    def bias(self, q_len: int, k_len: int, window: int | None) -> torch.Tensor:
        """Additive ``[q_len, k_len]`` mask (0 or -inf) for the new queries, cached per shape."""
        cache_key = (q_len, k_len, window)
        if cache_key not in self._masks:
            allowed = self.allowed(q_len, k_len, window)
            self._masks[cache_key] = torch.zeros(allowed.shape).masked_fill_(~allowed, -math.inf)
        return self._masks[cache_key]

    def allowed(self, q_len: int, k_len: int, window: int | None) -> torch.Tensor:
        """Boolean ``[q_len, k_len]``: which keys each new query may attend."""
        return self._build(q_len, k_len, window)

    def _build(self, q_len: int, k_len: int, window: int | None) -> torch.Tensor:
        fixed = self.key_positions.numel()
        tail = k_len - fixed  # question and generated tokens already in the cache or arriving now
        if self.tail_positions is not None:
            tail_positions = self.tail_positions[:tail]
        else:
            tail_positions = torch.arange(self.question_position, self.question_position + tail)
        positions = torch.cat([self.key_positions, tail_positions])
        query_positions = tail_positions[tail - q_len :]
        allowed = positions.unsqueeze(0) <= query_positions.unsqueeze(1)
        # causal inside the question: by index, as context keys can share positions with nothing here
        index = torch.arange(k_len).unsqueeze(0)
        allowed &= (index < fixed) | (index <= (k_len - q_len + torch.arange(q_len)).unsqueeze(1))
        if window is not None:
            allowed &= (query_positions.unsqueeze(1) - positions.unsqueeze(0)) < window
        if self.context_keep is not None:
            keep = torch.ones(k_len, dtype=torch.bool)
            keep[self.prefix_len : fixed] = self.context_keep
            allowed &= keep.unsqueeze(0)
        return allowed


def parallel_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    layout = kwargs.pop("ape_layout", None)
    probe = kwargs.pop("value_probe", None)
    if probe is not None and getattr(module, "layer_idx", None) == probe.layer:
        probe.capture(value)  # raises: the rest of the forward pass is not needed
    if layout is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    assert isinstance(layout, ParallelLayout)
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    # grouped-query attention without copying keys: fold each KV head's query heads into the rows
    grouped = query.reshape(batch, kv_heads, (heads // kv_heads) * q_len, dim)
    scaling = scaling if scaling is not None else dim**-0.5
    scores = (grouped @ key.transpose(-1, -2)) * scaling
    scores = scores.view(batch, kv_heads, heads // kv_heads, q_len, -1)
    window = kwargs.get("sliding_window")
    scores += layout.bias(q_len, key.shape[2], window if isinstance(window, int) else None)
    if layout.temperature != 1.0 or layout.scale != 1.0:
        _ape_correct(scores[..., layout.prefix_len : layout.prefix_len + layout.context_len],
                     layout.temperature, layout.scale)
    weights = torch.softmax(scores, dim=-1)
    output = weights.view(batch, kv_heads, -1, key.shape[2]) @ value
    return output.view(batch, heads, q_len, -1).transpose(1, 2).contiguous(), None


def _ape_correct(context_scores: torch.Tensor, temperature: float, scale: float) -> None:
    """Rewrite the context logits in place so one softmax gives APE's three-part merge.

    APE weighs the context part by ``S * exp(T * lse(s / T))`` and spreads it by ``softmax(s / T)``; a
    context logit of ``s / T + (T - 1) * lse(s / T) + log S`` yields exactly that weight per token."""
    context_scores /= temperature
    # a row whose context is fully masked has lse = -inf; clamping keeps it -inf instead of NaN
    lse = torch.logsumexp(context_scores, dim=-1, keepdim=True).clamp_min(-1e30)
    context_scores += (temperature - 1.0) * lse + math.log(scale)


class ProbeDone(Exception):
    """Raised by ``ValueProbe.capture`` to stop a forward pass once the probed layer's values are read."""


@dataclass
class ValueProbe:
    """Pass as ``value_probe=`` to a forward pass to read one layer's values (cache + new tokens) and stop
    there: the first layers of a pass cost a fraction of the whole."""

    layer: int
    values: torch.Tensor | None = None

    def capture(self, values: torch.Tensor) -> None:
        self.values = values
        raise ProbeDone


_registered = False


def enable(model: PreTrainedModel) -> None:
    """Switch ``model`` to the parallel attention function (idempotent; plain calls behave like SDPA)."""
    global _registered
    if not _registered:
        AttentionInterface.register(ATTENTION_NAME, parallel_attention_forward)
        # the mask builder must be registered under the same name, else the causal mask arrives as None
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
        _registered = True
    if model.config._attn_implementation != ATTENTION_NAME:
        model.set_attn_implementation(ATTENTION_NAME)


class _PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer that appends into spare capacity instead of concatenating.

    DynamicLayer copies the whole cache on every update; with ~1.5k cached tokens that copy costs more
    than the question's attention. Keys/values are views of the buffer's filled part."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self._keys, self._values, self._length = keys, values, length
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._expose()

    def _expose(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # out of spare room: grow by doubling, like a list
            grow = max(end, 2 * self._keys.shape[-2]) - self._keys.shape[-2]
            pad = (0, 0, 0, grow)
            self._keys = torch.nn.functional.pad(self._keys, pad)
            self._values = torch.nn.functional.pad(self._values, pad)
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self._expose()
        return self.keys, self.values


def build_cache(keys: torch.Tensor, values: torch.Tensor, length: int | None = None) -> DynamicCache:
    """A cache over ``[layers, kv_heads, capacity, head_dim]`` buffers whose first ``length`` tokens are
    filled; new tokens are written into the spare capacity (the buffers are modified). No config is
    given on purpose: sliding layers would truncate by index; the window is applied by position."""
    length = keys.shape[2] if length is None else length
    layers = [_PreallocatedLayer(keys[i].unsqueeze(0), values[i].unsqueeze(0), length)
              for i in range(keys.shape[0])]
    cache = DynamicCache()
    cache.layers = layers
    return cache
