"""Quantize cached key/value states to 8 or 4 bits (KIVI / CacheGen style), scales included.

Keys have a few channels with large, consistent magnitudes (outlier channels), so they are quantized per
channel across the chunk's tokens; values have no channel structure but vary per token, so they are
quantized per token in groups of channels. Both use asymmetric min/max with an fp16 scale and zero point.

Tensors are shaped ``[layers, kv_heads, tokens, head_dim]``. A quantized tensor is a dict of tensors
(``q``, ``scale``, ``zero``) so it can be stored as-is; ``stored_bytes`` counts everything stored.
"""

from __future__ import annotations

import torch

QUANTIZATIONS = ("none", "fp16", "int8", "int4")
VALUE_GROUP = 64  # channels per value quantization group (a whole head for 64-wide heads)
KEY_GROUP: int | None = None  # tokens per key quantization range (None: one range over the whole chunk)


def _qmax(bits: int) -> int:
    return (1 << bits) - 1


def _quantize(x: torch.Tensor, bits: int, dim: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Asymmetric min/max quantization with the range taken over ``dim`` (kept as size-1 dims)."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    scale = ((high - low) / _qmax(bits)).clamp_min(1e-8)
    # scale/zero are stored in fp16: quantize with the rounded values so decode matches encode exactly
    scale = scale.half().float()
    low = low.half().float()
    q = torch.round((x - low) / scale).clamp_(0, _qmax(bits)).to(torch.uint8)
    return {"q": _pack(q) if bits == 4 else q, "scale": scale.half(), "zero": low.half()}


def _dequantize(parts: dict[str, torch.Tensor], bits: int) -> torch.Tensor:
    q = _unpack(parts["q"]) if bits == 4 else parts["q"]
    return q.float() * parts["scale"].float() + parts["zero"].float()


def _pack(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last dimension (which must be even)."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).contiguous()


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def _grouped(values: torch.Tensor) -> torch.Tensor:
    *lead, dim = values.shape
    group = VALUE_GROUP if dim % VALUE_GROUP == 0 else dim
    return values.reshape(*lead, dim // group, group)


def _token_groups(keys: torch.Tensor) -> torch.Tensor:
    """``[L, H, T, D]`` -> ``[L, H, groups, G, D]``, padding the last group by repeating the last token."""
    layers, heads, tokens, dim = keys.shape
    group = KEY_GROUP or tokens
    padded = -(-tokens // group) * group
    if padded > tokens:
        keys = torch.cat([keys, keys[:, :, -1:].expand(layers, heads, padded - tokens, dim)], dim=2)
    return keys.reshape(layers, heads, padded // group, group, dim)


def quantize(keys: torch.Tensor, values: torch.Tensor, method: str) -> dict[str, torch.Tensor]:
    """The stored tensors for one chunk's states under ``method`` (see ``QUANTIZATIONS``)."""
    if method not in QUANTIZATIONS:
        raise ValueError(f"Unknown KV quantization {method!r}; expected one of {QUANTIZATIONS}.")
    if method == "none":
        return {"k": keys.float().contiguous(), "v": values.float().contiguous()}
    if method == "fp16":
        return {"k": keys.half().contiguous(), "v": values.half().contiguous()}
    bits = 8 if method == "int8" else 4
    # keys: one range per (layer, head, channel), taken over the tokens (or over groups of tokens)
    k = _quantize(_token_groups(keys.float()), bits, dim=-2)
    # values: one range per (layer, head, token, channel group)
    v = _quantize(_grouped(values.float()), bits, dim=-1)
    return {f"k_{name}": t for name, t in k.items()} | {f"v_{name}": t for name, t in v.items()}


def dequantize(stored: dict[str, torch.Tensor], method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 keys and values back from ``quantize``'s output."""
    if method in ("none", "fp16"):
        return stored["k"].float(), stored["v"].float()
    bits = 8 if method == "int8" else 4
    grouped_keys = _dequantize({n: stored[f"k_{n}"] for n in ("q", "scale", "zero")}, bits)
    grouped = _dequantize({n: stored[f"v_{n}"] for n in ("q", "scale", "zero")}, bits)
    tokens = grouped.shape[2]  # values are never padded: they give the true length
    return grouped_keys.flatten(2, 3)[:, :, :tokens], grouped.flatten(-2)


def dequantize_into(stored: dict[str, torch.Tensor], method: str, keys: torch.Tensor,
                    values: torch.Tensor) -> None:
    """Write fp32 keys and values into preallocated views (no intermediate full-size copies)."""
    if method in ("none", "fp16"):
        keys.copy_(stored["k"])
        values.copy_(stored["v"])
        return
    bits = 8 if method == "int8" else 4
    q = _unpack(stored["v_q"]) if bits == 4 else stored["v_q"]
    target = values.unflatten(-1, (q.shape[-2], q.shape[-1]))
    target.copy_(q)
    target.mul_(stored["v_scale"].float()).add_(stored["v_zero"].float())
    q = _unpack(stored["k_q"]) if bits == 4 else stored["k_q"]
    single = q.shape[2] == 1 and q.shape[3] == keys.shape[2]
    # one range over the chunk: decode straight into the view; token groups may be padded: decode aside
    target = keys.unsqueeze(2) if single else torch.empty(q.shape, dtype=keys.dtype)
    target.copy_(q)
    target.mul_(stored["k_scale"].float()).add_(stored["k_zero"].float())
    if not single:
        keys.copy_(target.flatten(2, 3)[:, :, : keys.shape[2]])


def stored_bytes(stored: dict[str, torch.Tensor]) -> int:
    """Bytes of all stored tensors, scales and zero points included."""
    return sum(t.numel() * t.element_size() for t in stored.values())
