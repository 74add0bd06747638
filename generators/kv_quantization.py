"""Quantize cached key/value states to 8 or 4 bits (KIVI / CacheGen style), scales included.

Keys have a few channels with large, consistent magnitudes (outlier channels), so they are quantized per
channel; values have no channel structure but vary per token, so they are quantized per token in groups of
channels. Both use asymmetric min/max ranges. At 4 bits one key range per channel over a whole chunk is
too coarse (a few extreme tokens stretch it, and the question's attention logits amplify the error), so
int4 keys get one range per channel per ``key_tokens`` tokens, as KIVI does.

Each range stores its zero point in fp16 and its step as a one-byte log2 code (``SCALE_STEPS`` codes per
octave, rounded up so the range is always covered: at most 7% coarser than exact). Small groups are what
make int4 accurate, and a one-byte step is what keeps their bookkeeping inside a third of fp16's bytes.

Tensors are shaped ``[layers, kv_heads, tokens, head_dim]``. A quantized tensor is a dict of tensors
(``q``, ``scale``, ``zero``) so it can be stored as-is; ``stored_bytes`` counts everything stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

QUANTIZATIONS = ("none", "fp16", "int8", "int4")
VALUE_GROUP = 64  # channels per value quantization group (a whole head for 64-wide heads)
SCALE_STEPS = 10  # step codes per octave: consecutive steps differ by 2 ** (1 / 10), about 7%
SCALE_BIAS = 160  # code 0 is a step of 2 ** -16, code 255 one of about 724


@dataclass(frozen=True)
class Scheme:
    bits: int
    key_tokens: int | None  # tokens per key range (None: one range per channel over the whole chunk)


SCHEMES = {"int8": Scheme(8, None), "int4": Scheme(4, 16)}


def _qmax(bits: int) -> int:
    return (1 << bits) - 1


def _encode_scale(scale: torch.Tensor) -> torch.Tensor:
    code = torch.ceil(torch.log2(scale) * SCALE_STEPS) + SCALE_BIAS
    return code.clamp_(0, 255).to(torch.uint8)


def _decode_scale(code: torch.Tensor) -> torch.Tensor:
    return torch.exp2((code.float() - SCALE_BIAS) / SCALE_STEPS)


def _quantize(x: torch.Tensor, bits: int, dim: int) -> dict[str, torch.Tensor]:
    """Asymmetric min/max quantization with the range taken over ``dim`` (kept as a size-1 dim)."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    code = _encode_scale(((high - low) / _qmax(bits)).clamp_min(1e-12))
    # quantize with the stored (rounded) step and zero point so decoding matches encoding exactly
    scale = _decode_scale(code)
    low = low.half()
    q = torch.round((x - low.float()) / scale).clamp_(0, _qmax(bits)).to(torch.uint8)
    return {"q": _pack(q) if bits == 4 else q, "scale": code, "zero": low}


def _decode_into(parts: dict[str, torch.Tensor], bits: int, target: torch.Tensor) -> None:
    """``q * step + zero`` written into ``target`` (shaped like the unpacked codes)."""
    target.copy_(_unpack(parts["q"]) if bits == 4 else parts["q"])
    target.mul_(_decode_scale(parts["scale"])).add_(parts["zero"].float())


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


def _token_groups(keys: torch.Tensor, group: int | None) -> torch.Tensor:
    """``[L, H, T, D]`` -> ``[L, H, groups, G, D]``, padding the last group by repeating the last token."""
    layers, heads, tokens, dim = keys.shape
    group = group or tokens
    padded = -(-tokens // group) * group
    if padded > tokens:
        keys = torch.cat([keys, keys[:, :, -1:].expand(layers, heads, padded - tokens, dim)], dim=2)
    return keys.reshape(layers, heads, padded // group, group, dim)


def _parts(stored: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {part: stored[f"{name}_{part}"] for part in ("q", "scale", "zero")}


def quantize(keys: torch.Tensor, values: torch.Tensor, method: str) -> dict[str, torch.Tensor]:
    """The stored tensors for one chunk's states under ``method`` (see ``QUANTIZATIONS``)."""
    if method not in QUANTIZATIONS:
        raise ValueError(f"Unknown KV quantization {method!r}; expected one of {QUANTIZATIONS}.")
    if method == "none":
        return {"k": keys.float().contiguous(), "v": values.float().contiguous()}
    if method == "fp16":
        return {"k": keys.half().contiguous(), "v": values.half().contiguous()}
    scheme = SCHEMES[method]
    # keys: one range per (layer, head, channel, group of tokens); values: per (layer, head, token, group)
    k = _quantize(_token_groups(keys.float(), scheme.key_tokens), scheme.bits, dim=-2)
    v = _quantize(_grouped(values.float()), scheme.bits, dim=-1)
    return {f"k_{name}": t for name, t in k.items()} | {f"v_{name}": t for name, t in v.items()}


def dequantize(stored: dict[str, torch.Tensor], method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 keys and values back from ``quantize``'s output."""
    if method in ("none", "fp16"):
        return stored["k"].float(), stored["v"].float()
    layers, heads, tokens = stored["v_q"].shape[:3]  # values are never padded: they give the true length
    dim = stored["k_q"].shape[-1] * (2 if SCHEMES[method].bits == 4 else 1)
    keys, values = torch.empty(layers, heads, tokens, dim), torch.empty(layers, heads, tokens, dim)
    dequantize_into(stored, method, keys, values)
    return keys, values


def dequantize_into(stored: dict[str, torch.Tensor], method: str, keys: torch.Tensor,
                    values: torch.Tensor) -> None:
    """Write fp32 keys and values into preallocated views (no intermediate full-size copies)."""
    if method in ("none", "fp16"):
        keys.copy_(stored["k"])
        values.copy_(stored["v"])
        return
    bits = SCHEMES[method].bits
    value_codes = stored["v_q"].shape[-1] * (2 if bits == 4 else 1)
    _decode_into(_parts(stored, "v"), bits, values.unflatten(-1, (-1, value_codes)))
    groups, group = stored["k_zero"].shape[2], stored["k_q"].shape[3]
    if groups * group == keys.shape[2]:  # groups tile the chunk exactly: decode straight into the view
        _decode_into(_parts(stored, "k"), bits, keys.unflatten(2, (groups, group)))
        return
    padded = torch.empty(*keys.shape[:2], groups, group, keys.shape[3])  # the last group was padded
    _decode_into(_parts(stored, "k"), bits, padded)
    keys.copy_(padded.flatten(2, 3)[:, :, : keys.shape[2]])


def stored_bytes(stored: dict[str, torch.Tensor]) -> int:
    """Bytes of all stored tensors, scales and zero points included."""
    return sum(t.numel() * t.element_size() for t in stored.values())
